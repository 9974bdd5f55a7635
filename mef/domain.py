"""Domain types of the federation workflow, with proto conversion at the edges.

The workflow (mef.workflow) and the Mff transports speak only these types;
servicers convert to and from mecfed.v1 messages with from_proto/to_proto.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, replace

from google.protobuf.timestamp_pb2 import Timestamp

from mecfed import validation as v
from mecfed.v1 import common_pb2, federator_pb2

DEFAULT_ECHO_PORT = 7
DEFAULT_OFFER_TIMEOUT_MS = 3000


def ts(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def from_ts(stamp: Timestamp) -> float:
    return stamp.ToNanoseconds() / 1e9


class FederationState(enum.IntEnum):
    REQUESTED = common_pb2.FEDERATION_STATE_REQUESTED
    COLLECTING_OFFERS = common_pb2.FEDERATION_STATE_COLLECTING_OFFERS
    AWARDED = common_pb2.FEDERATION_STATE_AWARDED
    DEPLOYING = common_pb2.FEDERATION_STATE_DEPLOYING
    CONNECTING = common_pb2.FEDERATION_STATE_CONNECTING
    VERIFYING = common_pb2.FEDERATION_STATE_VERIFYING
    ESTABLISHED = common_pb2.FEDERATION_STATE_ESTABLISHED
    FAILED = common_pb2.FEDERATION_STATE_FAILED
    TERMINATED = common_pb2.FEDERATION_STATE_TERMINATED

    @property
    def terminal(self) -> bool:
        return self in (
            FederationState.ESTABLISHED,
            FederationState.FAILED,
            FederationState.TERMINATED,
        )


@dataclass(frozen=True)
class AppSpec:
    image: str
    replicas: int = 1
    cpu_millicores: int = 0
    memory_mib: int = 0
    echo_port: int = DEFAULT_ECHO_PORT

    def validate(self, prefix: str = "app") -> AppSpec:
        v.require_image(self.image, f"{prefix}.image")
        v.require_range(self.replicas, f"{prefix}.replicas", 1, v.MAX_REPLICAS)
        v.require_range(self.cpu_millicores, f"{prefix}.resources.cpu_millicores", 0, 64_000)
        v.require_range(self.memory_mib, f"{prefix}.resources.memory_mib", 0, 256 * 1024)
        v.require_range(self.echo_port, f"{prefix}.echo_port", 1, 65535)
        return self

    @classmethod
    def from_proto(cls, msg: common_pb2.AppSpec) -> AppSpec:
        return cls(
            image=msg.image,
            replicas=msg.replicas,
            cpu_millicores=msg.resources.cpu_millicores,
            memory_mib=msg.resources.memory_mib,
            echo_port=msg.echo_port or DEFAULT_ECHO_PORT,
        )

    def to_proto(self) -> common_pb2.AppSpec:
        return common_pb2.AppSpec(
            image=self.image,
            replicas=self.replicas,
            resources=common_pb2.Resources(
                cpu_millicores=self.cpu_millicores, memory_mib=self.memory_mib
            ),
            echo_port=self.echo_port,
        )


@dataclass(frozen=True)
class Requirements:
    max_price: int
    offers_to_wait_for: int = 1
    offer_timeout_ms: int = DEFAULT_OFFER_TIMEOUT_MS

    def validate(self) -> Requirements:
        v.require_price(self.max_price, "requirements.max_price")
        v.require_range(self.offers_to_wait_for, "requirements.offers_to_wait_for", 1, 64)
        v.require_range(self.offer_timeout_ms, "requirements.offer_timeout_ms", 1, 600_000)
        return self

    @classmethod
    def from_proto(cls, msg: common_pb2.Requirements) -> Requirements:
        return cls(
            max_price=msg.max_price,
            offers_to_wait_for=msg.offers_to_wait_for or 1,
            offer_timeout_ms=msg.offer_timeout_ms or DEFAULT_OFFER_TIMEOUT_MS,
        )

    def to_proto(self) -> common_pb2.Requirements:
        return common_pb2.Requirements(
            max_price=self.max_price,
            offers_to_wait_for=self.offers_to_wait_for,
            offer_timeout_ms=self.offer_timeout_ms,
        )


@dataclass(frozen=True)
class TunnelCandidate:
    vni: int
    udp_port: int

    @classmethod
    def from_proto(cls, msg: common_pb2.TunnelCandidate) -> TunnelCandidate:
        return cls(msg.vni, msg.udp_port)

    def to_proto(self) -> common_pb2.TunnelCandidate:
        return common_pb2.TunnelCandidate(vni=self.vni, udp_port=self.udp_port)


@dataclass(frozen=True)
class OverlayEndpoint:
    underlay_ip: str
    subnet: str
    app_ips: tuple[str, ...] = ()
    vni: int = 0
    udp_port: int = 0

    def validate(self, field_name: str) -> OverlayEndpoint:
        v.require_ip(self.underlay_ip, f"{field_name}.underlay_ip")
        v.require_subnet(self.subnet, f"{field_name}.subnet")
        v.require_range(len(self.app_ips), f"number of {field_name}.app_ips", 0, 64)
        for ip in self.app_ips:
            v.require_ip(ip, f"{field_name}.app_ips")
        return self

    @classmethod
    def from_proto(cls, msg: common_pb2.OverlayEndpoint) -> OverlayEndpoint:
        return cls(msg.underlay_ip, msg.subnet, tuple(msg.app_ips), msg.vni, msg.udp_port)

    def to_proto(self) -> common_pb2.OverlayEndpoint:
        return common_pb2.OverlayEndpoint(
            underlay_ip=self.underlay_ip,
            vni=self.vni,
            udp_port=self.udp_port,
            subnet=self.subnet,
            app_ips=list(self.app_ips),
        )


@dataclass(frozen=True)
class TrafficReport:
    sent: int
    received: int
    loss: float
    rtt_ms: float
    rtt_max_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """Success means continuous traffic: every echo came back."""
        return self.sent > 0 and self.received == self.sent

    @classmethod
    def from_proto(cls, msg: common_pb2.TrafficReport) -> TrafficReport:
        return cls(msg.sent, msg.received, msg.loss, msg.rtt_ms, msg.rtt_max_ms)

    def to_proto(self) -> common_pb2.TrafficReport:
        return common_pb2.TrafficReport(
            sent=self.sent,
            received=self.received,
            loss=self.loss,
            rtt_ms=self.rtt_ms,
            rtt_max_ms=self.rtt_max_ms,
        )


@dataclass(frozen=True)
class ServiceNeed:
    """What a consumer asks providers to price: the announcement."""

    federation_id: str
    consumer_id: str
    app: AppSpec
    requirements: Requirements


@dataclass(frozen=True)
class Offer:
    """A provider's price for a ServiceNeed. ``ref`` is the transport's handle
    (offer id on the direct transport, bid reference on the chain)."""

    provider_id: str
    price: int
    ref: str
    valid_until: float
    received_at: float = field(default_factory=time.time)

    def to_proto(self) -> common_pb2.Offer:
        return common_pb2.Offer(
            provider_id=self.provider_id,
            price=self.price,
            valid_until=ts(self.valid_until),
            received_at=ts(self.received_at),
        )


@dataclass(frozen=True)
class DeploymentOrder:
    """The consumer's half of the overlay, handed to the winning provider."""

    federation_id: str
    consumer_id: str
    app: AppSpec
    consumer_endpoint: OverlayEndpoint
    candidates: tuple[TunnelCandidate, ...]


@dataclass(frozen=True)
class DeploymentResult:
    app_instance_id: str
    provider_endpoint: OverlayEndpoint


@dataclass(frozen=True)
class Problem:
    """MEC 040 ProblemDetails."""

    title: str
    status: int
    detail: str

    def to_proto(self) -> common_pb2.ProblemDetails:
        return common_pb2.ProblemDetails(
            type="about:blank", title=self.title, status=self.status, detail=self.detail
        )


@dataclass(frozen=True)
class Step:
    name: str
    started_at: float
    finished_at: float

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class Federation:
    """The consumer's record of one federation. Immutable: every change makes
    a new version, which is what watchers receive."""

    federation_id: str
    service_name: str
    app: AppSpec
    requirements: Requirements
    consumer_id: str
    backend: str
    state: FederationState = FederationState.REQUESTED
    provider_id: str = ""
    offers: tuple[Offer, ...] = ()
    price: int = 0
    app_instance_id: str = ""
    consumer_endpoint: OverlayEndpoint | None = None
    provider_endpoint: OverlayEndpoint | None = None
    traffic: TrafficReport | None = None
    steps: tuple[Step, ...] = ()
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    error: Problem | None = None

    def evolve(self, **changes: object) -> Federation:
        return replace(self, updated_at=time.time(), **changes)  # type: ignore[arg-type]

    def to_proto(self) -> federator_pb2.Federation:
        msg = federator_pb2.Federation(
            federation_id=self.federation_id,
            service_name=self.service_name,
            app=self.app.to_proto(),
            requirements=self.requirements.to_proto(),
            state=int(self.state),
            consumer_id=self.consumer_id,
            provider_id=self.provider_id,
            offers=[o.to_proto() for o in self.offers],
            price=self.price,
            app_instance_id=self.app_instance_id,
            steps=[
                common_pb2.StepTiming(
                    name=s.name, started_at=ts(s.started_at), finished_at=ts(s.finished_at)
                )
                for s in self.steps
            ],
            created_at=ts(self.created_at),
            updated_at=ts(self.updated_at),
            backend=self.backend,
        )
        if self.consumer_endpoint:
            msg.consumer_endpoint.CopyFrom(self.consumer_endpoint.to_proto())
        if self.provider_endpoint:
            msg.provider_endpoint.CopyFrom(self.provider_endpoint.to_proto())
        if self.traffic:
            msg.traffic.CopyFrom(self.traffic.to_proto())
        if self.error:
            msg.error.CopyFrom(self.error.to_proto())
        return msg
