"""Conversion of the MEO's Mfm messages (mecfed/v1/orchestrator.proto), in
both directions: the MEO's servicer reads requests and writes replies, the
MEF's MEO client writes requests and reads replies."""

from __future__ import annotations

from mecfed.errors import InvalidArgument
from mecfed.model import (
    App,
    AppInstance,
    AppSpec,
    DeploymentOrder,
    InstanceState,
    OverlayEndpoint,
    OverlayReservation,
    Role,
    ServiceStatus,
    TrafficCheck,
)
from mecfed.model.checks import MAX_CANDIDATES, require_id, require_name
from mecfed.model.orchestration import WATCH_PERIOD_MS_DEFAULT, require_watch_period
from mecfed.v1 import orchestrator_pb2 as pb
from mecfed.wire.common import (
    app_from_proto,
    app_to_proto,
    build,
    candidate_to_proto,
    candidates_from_proto,
    endpoint_from_proto,
    endpoint_to_proto,
    required,
)

DEFAULT_CANDIDATES = 4


def require_app_ips(endpoint: OverlayEndpoint, field: str) -> None:
    """A provider's end must name the instances traffic is checked against."""
    if not endpoint.app_ips:
        raise InvalidArgument.field(f"{field}.app_ips", "must name at least one instance")


# --- apps ---------------------------------------------------------------------


def instance_to_proto(inst: AppInstance) -> pb.AppInstance:
    return pb.AppInstance(
        instance_id=inst.instance_id,
        host=inst.host,
        state=int(inst.state),  # type: ignore[arg-type]
        overlay_ips=list(inst.overlay_ips),
    )


def instance_from_proto(msg: pb.AppInstance) -> AppInstance:
    try:
        state = InstanceState(msg.state or InstanceState.PENDING)
    except ValueError:  # a state we do not know: not an instance that runs
        state = InstanceState.FAILED
    return AppInstance(msg.instance_id, msg.host, state, tuple(msg.overlay_ips))


def app_record_to_proto(app: App) -> pb.App:
    return pb.App(
        name=app.name,
        spec=app_to_proto(app.spec),
        instances=[instance_to_proto(i) for i in app.instances],
        federation_id=app.federation_id,
    )


def create_app_from_proto(msg: pb.CreateAppRequest) -> tuple[str, AppSpec]:
    name = require_name(msg.name, "name")
    return name, app_from_proto(required(msg, "spec", "spec"), "spec")


def app_name_from(value: str) -> str:
    return require_name(value, "name")


def federation_id_from(value: str) -> str:
    """A request's ``federation_id``."""
    return require_id(value, "federation_id")


def service_key_from(msg: pb.ReleaseServiceRequest | pb.GetServiceStatusRequest) -> tuple[str, str]:
    """(federation_id, consumer_id) of ReleaseService / GetServiceStatus; an
    empty consumer_id means this system's own (consumer-side) federation."""
    federation_id = require_id(msg.federation_id, "federation_id")
    consumer_id = require_id(msg.consumer_id, "consumer_id") if msg.consumer_id else ""
    return federation_id, consumer_id


# --- provider side --------------------------------------------------------------


def deploy_from_proto(msg: pb.DeployFederatedServiceRequest) -> DeploymentOrder:
    federation_id = require_id(msg.federation_id, "federation_id")
    consumer_id = require_id(msg.consumer_id, "consumer_id")
    app = app_from_proto(required(msg, "app", "app"))
    endpoint = endpoint_from_proto(
        required(msg, "consumer_endpoint", "consumer_endpoint"), "consumer_endpoint"
    )
    candidates = candidates_from_proto(msg.candidates)
    return build(
        "",
        DeploymentOrder,
        federation_id=federation_id,
        consumer_id=consumer_id,
        app=app,
        consumer_endpoint=endpoint,
        candidates=candidates,
    )


def deploy_to_proto(order: DeploymentOrder) -> pb.DeployFederatedServiceRequest:
    return pb.DeployFederatedServiceRequest(
        federation_id=order.federation_id,
        consumer_id=order.consumer_id,
        app=app_to_proto(order.app),
        consumer_endpoint=endpoint_to_proto(order.consumer_endpoint),
        candidates=[candidate_to_proto(c) for c in order.candidates],
    )


def deployed_to_proto(
    endpoint: OverlayEndpoint, instances: tuple[AppInstance, ...]
) -> pb.DeployFederatedServiceResponse:
    return pb.DeployFederatedServiceResponse(
        provider_endpoint=endpoint_to_proto(endpoint),
        instances=[instance_to_proto(i) for i in instances],
    )


def deployed_from_proto(msg: pb.DeployFederatedServiceResponse) -> OverlayEndpoint:
    endpoint = endpoint_from_proto(msg.provider_endpoint, "provider_endpoint")
    endpoint.require_tunnel("provider_endpoint")
    require_app_ips(endpoint, "provider_endpoint")
    return endpoint


# --- consumer side --------------------------------------------------------------


def reserve_from_proto(msg: pb.ReserveOverlayRequest) -> tuple[str, int]:
    federation_id = require_id(msg.federation_id, "federation_id")
    count = msg.candidates or DEFAULT_CANDIDATES
    if not 1 <= count <= MAX_CANDIDATES:
        raise InvalidArgument.field("candidates", f"is {count}; it must be 1..{MAX_CANDIDATES}")
    return federation_id, count


def reservation_to_proto(res: OverlayReservation) -> pb.ReserveOverlayResponse:
    return pb.ReserveOverlayResponse(
        consumer_endpoint=endpoint_to_proto(res.endpoint),
        candidates=[candidate_to_proto(c) for c in res.candidates],
    )


def reservation_from_proto(msg: pb.ReserveOverlayResponse) -> OverlayReservation:
    endpoint = endpoint_from_proto(msg.consumer_endpoint, "consumer_endpoint")
    return build(
        "", OverlayReservation, endpoint=endpoint, candidates=candidates_from_proto(msg.candidates)
    )


def connect_from_proto(msg: pb.ConnectOverlayRequest) -> tuple[str, str, OverlayEndpoint]:
    federation_id = require_id(msg.federation_id, "federation_id")
    service_name = require_name(msg.service_name, "service_name")
    provider = endpoint_from_proto(
        required(msg, "provider_endpoint", "provider_endpoint"), "provider_endpoint"
    )
    provider.require_tunnel("provider_endpoint")
    require_app_ips(provider, "provider_endpoint")
    return federation_id, service_name, provider


def _check_from(msg: pb.VerifyTrafficRequest | pb.WatchTrafficRequest) -> TrafficCheck:
    defaults = TrafficCheck()
    check = build(
        "",
        TrafficCheck,
        count=msg.count or defaults.count,
        interval_ms=msg.interval_ms or defaults.interval_ms,
        timeout_ms=msg.timeout_ms or defaults.timeout_ms,
        echo_port=msg.echo_port or defaults.echo_port,
    )
    return check


def traffic_check_from_proto(msg: pb.VerifyTrafficRequest) -> tuple[str, TrafficCheck]:
    federation_id = require_id(msg.federation_id, "federation_id")
    return federation_id, _check_from(msg)


def watch_traffic_from_proto(msg: pb.WatchTrafficRequest) -> tuple[str, TrafficCheck, int]:
    """(federation_id, the per-series check, period_ms); 0 means the default."""
    federation_id = require_id(msg.federation_id, "federation_id")
    period_ms = require_watch_period(msg.period_ms or WATCH_PERIOD_MS_DEFAULT)
    return federation_id, _check_from(msg), period_ms


def watch_traffic_to_proto(
    federation_id: str, check: TrafficCheck, period_ms: int
) -> pb.WatchTrafficRequest:
    return pb.WatchTrafficRequest(
        federation_id=federation_id,
        period_ms=period_ms,
        count=check.count,
        interval_ms=check.interval_ms,
        timeout_ms=check.timeout_ms,
        echo_port=check.echo_port,
    )


def traffic_check_to_proto(federation_id: str, check: TrafficCheck) -> pb.VerifyTrafficRequest:
    return pb.VerifyTrafficRequest(
        federation_id=federation_id,
        count=check.count,
        interval_ms=check.interval_ms,
        timeout_ms=check.timeout_ms,
        echo_port=check.echo_port,
    )


def status_to_proto(status: ServiceStatus) -> pb.ServiceStatus:
    return pb.ServiceStatus(
        federation_id=status.federation_id,
        role=str(status.role),
        instances=[instance_to_proto(i) for i in status.instances],
        local_endpoint=endpoint_to_proto(status.local_endpoint) if status.local_endpoint else None,
        remote_endpoint=(
            endpoint_to_proto(status.remote_endpoint) if status.remote_endpoint else None
        ),
        links=list(status.links),
        consumer_id=status.consumer_id,
    )


def services_to_proto(services: list[ServiceStatus]) -> pb.ListServicesResponse:
    return pb.ListServicesResponse(services=[status_to_proto(s) for s in services])


def status_from_proto(msg: pb.ServiceStatus) -> ServiceStatus:
    """The MEO's report, as its own federator reads it back (reconcile)."""
    try:
        role = Role(msg.role)
    except ValueError:
        raise InvalidArgument.field("role", f"{msg.role!r} is not a role") from None
    return ServiceStatus(
        federation_id=msg.federation_id,
        role=role,
        links=tuple(msg.links),
        consumer_id=msg.consumer_id,
    )
