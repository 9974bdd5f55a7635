"""What a MEC Orchestrator reports and is asked: apps, their instances, a
federated service's status, the traffic check (Mfm, orchestrator side)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mecfed.model import checks as c
from mecfed.model.app import AppSpec
from mecfed.model.overlay import OverlayEndpoint, TunnelCandidate, require_candidates


class InstanceState(enum.IntEnum):
    """Values equal mecfed.v1.InstanceState (GSMA OPG.04 app instance states)."""

    PENDING = 1
    READY = 2
    FAILED = 3
    TERMINATING = 4
    TERMINATED = 5

    @property
    def terminal(self) -> bool:
        return self in (InstanceState.READY, InstanceState.FAILED, InstanceState.TERMINATED)


class Role(enum.StrEnum):
    PROVIDER = "provider"
    CONSUMER = "consumer"


@dataclass(frozen=True, slots=True)
class AppInstance:
    instance_id: str
    host: str
    state: InstanceState = InstanceState.READY
    overlay_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class App:
    name: str
    spec: AppSpec
    instances: tuple[AppInstance, ...] = ()
    federation_id: str = ""  # set for apps deployed for a foreign consumer


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    federation_id: str
    role: Role
    instances: tuple[AppInstance, ...] = ()
    local_endpoint: OverlayEndpoint | None = None
    remote_endpoint: OverlayEndpoint | None = None
    links: tuple[str, ...] = ()
    consumer_id: str = ""  # provider role: whose federation it is


@dataclass(frozen=True, slots=True)
class OverlayReservation:
    """The consumer's end as far as it is known before a provider is chosen
    (underlay address and subnet) and the tunnel candidates it holds."""

    endpoint: OverlayEndpoint
    candidates: tuple[TunnelCandidate, ...]

    def __post_init__(self) -> None:
        require_candidates(self.candidates, "candidates")


# Runtime liveness: the gap between two series of a WatchTraffic stream.
WATCH_PERIOD_MS_DEFAULT = 2000
WATCH_PERIOD_MS_MIN = 100
WATCH_PERIOD_MS_MAX = 3_600_000


def require_watch_period(period_ms: int, field: str = "period_ms") -> int:
    c.require_range(period_ms, field, WATCH_PERIOD_MS_MIN, WATCH_PERIOD_MS_MAX)
    return period_ms


@dataclass(frozen=True, slots=True)
class TrafficCheck:
    """How the consumer proves the federation works: ``count`` UDP echoes to
    every provider instance, ``interval_ms`` apart, each answered within
    ``timeout_ms``; success only if every one comes back."""

    count: int = 20
    interval_ms: int = 10
    timeout_ms: int = 500
    echo_port: int = c.DEFAULT_ECHO_PORT

    def __post_init__(self) -> None:
        c.require_range(self.count, "count", 1, 1000)
        c.require_range(self.interval_ms, "interval_ms", 0, 1000)
        c.require_range(self.timeout_ms, "timeout_ms", 1, 10_000)
        c.require_range(self.echo_port, "echo_port", 1, 65535)


__all__ = [
    "WATCH_PERIOD_MS_DEFAULT",
    "App",
    "AppInstance",
    "InstanceState",
    "OverlayReservation",
    "Role",
    "ServiceStatus",
    "TrafficCheck",
    "require_watch_period",
]
