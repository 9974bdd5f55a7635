"""The VXLAN overlay between a consumer's and a provider's app containers:
tunnel candidates, the two endpoints, and the traffic report that proves it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mecfed.errors import InvalidArgument
from mecfed.model import checks as c


@dataclass(frozen=True, slots=True)
class TunnelCandidate:
    """A (VNI, UDP port) pair the consumer reserved on its host."""

    vni: int
    udp_port: int

    def __post_init__(self) -> None:
        c.require_range(self.vni, "vni", c.MIN_VNI, c.MAX_VNI)
        c.require_range(self.udp_port, "udp_port", c.MIN_TUNNEL_PORT, c.MAX_TUNNEL_PORT)


def require_candidates(candidates: tuple[TunnelCandidate, ...], field: str) -> None:
    if not 1 <= len(candidates) <= c.MAX_CANDIDATES:
        raise InvalidArgument.field(
            field, f"has {len(candidates)} entries; it must have 1..{c.MAX_CANDIDATES}"
        )
    if len(set(candidates)) != len(candidates):
        raise InvalidArgument.field(field, "lists a (vni, udp_port) pair twice")


@dataclass(frozen=True, slots=True)
class OverlayEndpoint:
    """One end of a federation's overlay. ``vni``/``udp_port`` are 0 until a
    tunnel candidate is chosen (a consumer's reservation has none yet)."""

    underlay_ip: str
    subnet: str
    app_ips: tuple[str, ...] = ()
    vni: int = 0
    udp_port: int = 0

    def __post_init__(self) -> None:
        c.require_underlay_ip(self.underlay_ip, "underlay_ip")
        net = c.require_overlay_subnet(self.subnet, "subnet")
        if len(self.app_ips) > c.MAX_APP_IPS:
            raise InvalidArgument.field(
                "app_ips", f"has {len(self.app_ips)} entries; at most {c.MAX_APP_IPS}"
            )
        for i, ip in enumerate(self.app_ips):
            c.require_host_in(ip, net, f"app_ips[{i}]")
        if len(set(self.app_ips)) != len(self.app_ips):
            raise InvalidArgument.field("app_ips", "lists an address twice")
        if self.vni or self.udp_port:
            TunnelCandidate(self.vni, self.udp_port)  # both set and in range

    @property
    def tunnel(self) -> TunnelCandidate | None:
        return TunnelCandidate(self.vni, self.udp_port) if self.vni else None

    def require_tunnel(self, field: str) -> TunnelCandidate:
        """The chosen tunnel; InvalidArgument when this end has none yet."""
        if not self.vni:
            raise InvalidArgument.field(f"{field}.vni", "is required (no tunnel was chosen)")
        return TunnelCandidate(self.vni, self.udp_port)

    def require_remote_of(self, own_underlay_ip: str, field: str) -> OverlayEndpoint:
        """This end as the far end of a tunnel from ``own_underlay_ip``: a
        system cannot federate with its own underlay address."""
        if self.underlay_ip == own_underlay_ip:
            raise InvalidArgument.field(
                f"{field}.underlay_ip", f"{self.underlay_ip} is this system's own underlay address"
            )
        return self

    def with_tunnel(self, tunnel: TunnelCandidate) -> OverlayEndpoint:
        return replace(self, vni=tunnel.vni, udp_port=tunnel.udp_port)

    def with_app_ips(self, app_ips: tuple[str, ...]) -> OverlayEndpoint:
        return replace(self, app_ips=app_ips)


@dataclass(frozen=True, slots=True)
class TrafficReport:
    """The app-to-app echo series across the overlay."""

    sent: int
    received: int
    rtt_ms: float = 0.0  # mean over received echoes
    rtt_max_ms: float = 0.0
    warmup_ms: float = 0.0  # until the first, unmeasured, echo came back
    measured_at: float = 0.0  # epoch seconds when the series ended (0 = unknown)

    @property
    def loss(self) -> float:
        return 0.0 if self.sent == 0 else (self.sent - self.received) / self.sent

    @property
    def ok(self) -> bool:
        """Success means continuous traffic: every echo came back."""
        return self.sent > 0 and self.received == self.sent

    @staticmethod
    def merge(parts: list[TrafficReport]) -> TrafficReport:
        received = sum(p.received for p in parts)
        return TrafficReport(
            sent=sum(p.sent for p in parts),
            received=received,
            rtt_ms=sum(p.rtt_ms * p.received for p in parts) / received if received else 0.0,
            rtt_max_ms=max((p.rtt_max_ms for p in parts), default=0.0),
            warmup_ms=max((p.warmup_ms for p in parts), default=0.0),
            measured_at=max((p.measured_at for p in parts), default=0.0),
        )


__all__ = ["OverlayEndpoint", "TrafficReport", "TunnelCandidate", "require_candidates"]
