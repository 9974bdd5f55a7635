"""The VIM driver protocol the orchestrator programs against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Labels every instance carries; cleanup and listing filter on them.
LABEL_SYSTEM = "mecfed.system"
LABEL_FEDERATION = "mecfed.federation"
LABEL_APP = "mecfed.app"
LABEL_TESTBED = "mecfed.testbed"
NAME_PREFIX = "mecfed"


@dataclass(frozen=True)
class Resources:
    cpu_millicores: int = 0  # 0 = best effort
    memory_mib: int = 0  # 0 = best effort


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    pid: int  # a process inside the instance's network namespace
    netns_path: str  # e.g. /proc/<pid>/ns/net or /var/run/netns/<name>
    labels: Mapping[str, str] = field(default_factory=dict)
    running: bool = True


class VimDriver(Protocol):
    """One host's VIM. All calls are async; implementations must leave
    nothing behind once ``delete_instance`` returns."""

    host: str

    async def create_instance(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        resources: Resources,
        env: Mapping[str, str] | None = None,
    ) -> Instance: ...

    async def delete_instance(self, instance_id: str) -> None:
        """Idempotent: deleting an unknown instance succeeds."""
        ...

    async def list_instances(self, labels: Mapping[str, str] | None = None) -> list[Instance]: ...

    async def get_instance(self, instance_id: str) -> Instance | None: ...


def instance_name(system_id: str, app: str, suffix: str) -> str:
    """Deterministic, prefix-searchable name of an instance."""
    return f"{NAME_PREFIX}-{system_id}-{app}-{suffix}"
