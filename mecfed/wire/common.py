"""Conversion of the shared types (mecfed/v1/common.proto) to and from the
domain model. ``*_from_proto`` validates: it builds model records, which
check their bounds, and reports wrong fields under their full path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from mecfed.errors import InvalidArgument
from mecfed.model import (
    AppSpec,
    EndPoint,
    OverlayEndpoint,
    Problem,
    Requirements,
    Resources,
    Step,
    SystemRecord,
    TrafficReport,
    TunnelCandidate,
)
from mecfed.model.checks import DEFAULT_ECHO_PORT, DEFAULT_OFFER_TIMEOUT_MS
from mecfed.v1 import common_pb2

T = TypeVar("T")


def build(field: str, factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``factory(*args, **kwargs)`` with its field violations reported under
    ``field`` (the record's path in the request)."""
    try:
        return factory(*args, **kwargs)
    except InvalidArgument as exc:
        raise exc.under(field) from None


def required(msg: Message, name: str, field: str, hint: str = "") -> Any:
    """Sub-message ``name`` of ``msg``; InvalidArgument if it is not set."""
    if not msg.HasField(name):
        raise InvalidArgument.field(field, f"is required{f' ({hint})' if hint else ''}")
    return getattr(msg, name)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def ts(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def from_ts(stamp: Timestamp) -> float:
    return stamp.ToNanoseconds() / 1e9


# --- app -------------------------------------------------------------------


def app_from_proto(msg: common_pb2.AppSpec, field: str = "app") -> AppSpec:
    resources = build(
        join(field, "resources"),
        Resources,
        cpu_millicores=msg.resources.cpu_millicores,
        memory_mib=msg.resources.memory_mib,
    )
    return build(
        field,
        AppSpec,
        image=msg.image,
        replicas=msg.replicas,
        resources=resources,
        echo_port=msg.echo_port or DEFAULT_ECHO_PORT,
    )


def app_to_proto(app: AppSpec) -> common_pb2.AppSpec:
    return common_pb2.AppSpec(
        image=app.image,
        replicas=app.replicas,
        resources=common_pb2.Resources(
            cpu_millicores=app.resources.cpu_millicores, memory_mib=app.resources.memory_mib
        ),
        echo_port=app.echo_port,
    )


def requirements_from_proto(
    msg: common_pb2.Requirements, field: str = "requirements"
) -> Requirements:
    return build(
        field,
        Requirements,
        max_price=msg.max_price,
        offers_to_wait_for=msg.offers_to_wait_for or 1,
        offer_timeout_ms=msg.offer_timeout_ms or DEFAULT_OFFER_TIMEOUT_MS,
    )


def requirements_to_proto(req: Requirements) -> common_pb2.Requirements:
    return common_pb2.Requirements(
        max_price=req.max_price,
        offers_to_wait_for=req.offers_to_wait_for,
        offer_timeout_ms=req.offer_timeout_ms,
    )


# --- overlay ----------------------------------------------------------------


def candidate_from_proto(msg: common_pb2.TunnelCandidate, field: str) -> TunnelCandidate:
    return build(field, TunnelCandidate, msg.vni, msg.udp_port)


def candidates_from_proto(
    msgs: Iterable[common_pb2.TunnelCandidate], field: str = "candidates"
) -> tuple[TunnelCandidate, ...]:
    return tuple(candidate_from_proto(m, f"{field}[{i}]") for i, m in enumerate(msgs))


def candidate_to_proto(candidate: TunnelCandidate) -> common_pb2.TunnelCandidate:
    return common_pb2.TunnelCandidate(vni=candidate.vni, udp_port=candidate.udp_port)


def endpoint_from_proto(msg: common_pb2.OverlayEndpoint, field: str) -> OverlayEndpoint:
    return build(
        field,
        OverlayEndpoint,
        underlay_ip=msg.underlay_ip,
        subnet=msg.subnet,
        app_ips=tuple(msg.app_ips),
        vni=msg.vni,
        udp_port=msg.udp_port,
    )


def endpoint_to_proto(ep: OverlayEndpoint) -> common_pb2.OverlayEndpoint:
    return common_pb2.OverlayEndpoint(
        underlay_ip=ep.underlay_ip,
        vni=ep.vni,
        udp_port=ep.udp_port,
        subnet=ep.subnet,
        app_ips=list(ep.app_ips),
    )


def traffic_from_proto(msg: common_pb2.TrafficReport) -> TrafficReport:
    measured_at = from_ts(msg.measured_at) if msg.HasField("measured_at") else 0.0
    return TrafficReport(
        msg.sent, msg.received, msg.rtt_ms, msg.rtt_max_ms, measured_at=measured_at
    )


def traffic_to_proto(report: TrafficReport) -> common_pb2.TrafficReport:
    return common_pb2.TrafficReport(
        sent=report.sent,
        received=report.received,
        loss=report.loss,
        rtt_ms=report.rtt_ms,
        rtt_max_ms=report.rtt_max_ms,
        measured_at=ts(report.measured_at) if report.measured_at else None,
    )


# --- records ------------------------------------------------------------------


def problem_to_proto(problem: Problem) -> common_pb2.ProblemDetails:
    return common_pb2.ProblemDetails(
        type="about:blank", title=problem.title, status=problem.status, detail=problem.detail
    )


def problem_from_proto(msg: common_pb2.ProblemDetails) -> Problem:
    return Problem(msg.title, msg.status, msg.detail)


def step_to_proto(step: Step) -> common_pb2.StepTiming:
    return common_pb2.StepTiming(
        name=step.name, started_at=ts(step.started_at), finished_at=ts(step.finished_at)
    )


def endpoint_info_from_proto(msg: common_pb2.EndPointInfo, field: str = "endpoint") -> EndPoint:
    which = msg.WhichOneof("endpoint")
    if which == "uris":
        return build(field, EndPoint, uris=tuple(msg.uris.uris))
    if which == "fqdn":
        return build(field, EndPoint, fqdn=tuple(msg.fqdn.fqdn))
    if which == "addresses":
        addresses = tuple((a.host, a.port) for a in msg.addresses.addresses)
        return build(field, EndPoint, addresses=addresses)
    if which == "alternative":
        return build(field, EndPoint, alternative=msg.alternative)
    return build(field, EndPoint)  # raises: nothing set


def endpoint_info_to_proto(ep: EndPoint) -> common_pb2.EndPointInfo:
    msg = common_pb2.EndPointInfo()
    if ep.uris is not None:
        msg.uris.uris.extend(ep.uris)
    elif ep.fqdn is not None:
        msg.fqdn.fqdn.extend(ep.fqdn)
    elif ep.addresses is not None:
        msg.addresses.addresses.extend(common_pb2.Address(host=h, port=p) for h, p in ep.addresses)
    else:
        msg.alternative = ep.alternative or ""
    return msg


def system_from_proto(msg: common_pb2.SystemInfo, field: str = "system_info") -> SystemRecord:
    endpoint = (
        endpoint_info_from_proto(msg.endpoint, join(field, "endpoint"))
        if msg.HasField("endpoint")
        else None
    )
    return build(
        field,
        SystemRecord,
        system_id=msg.system_id,
        system_name=msg.system_name,
        system_provider=msg.system_provider,
        endpoint=endpoint,
    )


def system_to_proto(record: SystemRecord) -> common_pb2.SystemInfo:
    msg = common_pb2.SystemInfo(
        system_id=record.system_id,
        system_name=record.system_name,
        system_provider=record.system_provider,
    )
    if record.endpoint is not None:
        msg.endpoint.CopyFrom(endpoint_info_to_proto(record.endpoint))
    return msg
