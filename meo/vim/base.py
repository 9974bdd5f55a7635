"""The VIM driver protocol the orchestrator programs against.

Every capability the orchestrator uses is part of the protocol; a driver
that has nothing to do for one (the netns VIM keeps no image store and no
warm pool) implements it as a no-op instead of leaving it out.

Drivers raise domain errors (:mod:`mecfed.errors`) in their own words; the
engine's or kernel's text goes to the log, never to a caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mecfed.model import Resources

# Labels every instance carries; cleanup and listing filter on them.
LABEL_SYSTEM = "mecfed.system"
LABEL_FEDERATION = "mecfed.federation"
LABEL_APP = "mecfed.app"
LABEL_TESTBED = "mecfed.testbed"
# The MEO installation (meo.state.installation_id) that made it: a driver
# lists, claims and removes only its own installation's instances, so two
# MEOs with the same system id on one host never touch each other's.
LABEL_INSTALLATION = "mecfed.installation"
NAME_PREFIX = "mecfed"


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
    nothing behind once ``delete_instance`` returns, nor when
    ``create_instance`` fails."""

    host: str
    system_id: str
    installation: str  # "" for a driver that is not scoped to one installation

    async def check_image(self, image: str) -> None:
        """Fails fast, before anything is made, if ``image`` cannot run here."""
        ...

    async def create_instance(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        resources: Resources,
        env: Mapping[str, str] | None = None,
    ) -> Instance: ...

    async def rename_instance(self, instance_id: str, name: str) -> Instance | None:
        """Renames a running instance (a warm-pool claim) and returns it as it
        is now; None if it is gone."""
        ...

    async def delete_instance(self, instance_id: str) -> None:
        """Idempotent: deleting an unknown instance succeeds."""
        ...

    async def list_instances(self, labels: Mapping[str, str] | None = None) -> list[Instance]: ...

    async def get_instance(self, instance_id: str) -> Instance | None: ...

    async def fill(self) -> None:
        """Prepares the driver before the MEO serves (e.g. a warm pool)."""
        ...

    async def close(self) -> None:
        """Stops background work; instances stay."""
        ...


def name_prefix(system_id: str, installation: str = "") -> str:
    """What every instance name of this system (and installation) starts with."""
    inst = f"{installation[:6]}-" if installation else ""
    return f"{NAME_PREFIX}-{system_id}-{inst}"


def instance_name(system_id: str, app: str, suffix: str, installation: str = "") -> str:
    """Deterministic, prefix-searchable name of an instance."""
    return f"{name_prefix(system_id, installation)}{app}-{suffix}"


__all__ = [
    "LABEL_APP",
    "LABEL_FEDERATION",
    "LABEL_INSTALLATION",
    "LABEL_SYSTEM",
    "LABEL_TESTBED",
    "NAME_PREFIX",
    "Instance",
    "Resources",
    "VimDriver",
    "instance_name",
    "name_prefix",
]
