"""What a federated service runs: the app spec, one definition for MEF and MEO."""

from __future__ import annotations

from dataclasses import dataclass, field

from mecfed.errors import InvalidArgument
from mecfed.model import checks as c


@dataclass(frozen=True, slots=True)
class Resources:
    """Per replica; 0 means best effort."""

    cpu_millicores: int = 0
    memory_mib: int = 0

    def __post_init__(self) -> None:
        c.require_range(self.cpu_millicores, "cpu_millicores", 0, c.MAX_CPU_MILLICORES)
        c.require_range(self.memory_mib, "memory_mib", 0, c.MAX_MEMORY_MIB)
        if 0 < self.memory_mib < c.MIN_MEMORY_MIB:
            raise InvalidArgument.field(
                "memory_mib", f"is {self.memory_mib}; it must be 0 or at least {c.MIN_MEMORY_MIB}"
            )


@dataclass(frozen=True, slots=True)
class AppSpec:
    """The app to run: ``replicas`` identical instances of ``image``, each
    answering UDP echo probes on ``echo_port`` (the success check)."""

    image: str
    replicas: int = 1
    resources: Resources = field(default_factory=Resources)
    echo_port: int = c.DEFAULT_ECHO_PORT

    def __post_init__(self) -> None:
        c.require_image(self.image, "image")
        c.require_range(self.replicas, "replicas", 1, c.MAX_REPLICAS)
        c.require_range(self.echo_port, "echo_port", 1, 65535)


__all__ = ["AppSpec", "Resources"]
