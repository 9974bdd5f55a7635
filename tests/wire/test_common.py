"""Tests for mecfed.wire.common: the shared types (mecfed/v1/common.proto)."""

from __future__ import annotations

import pytest
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
)
from mecfed.v1 import common_pb2
from mecfed.wire import common as w
from tests.model.support import invalid
from tests.wire.samples import (
    APP,
    CANDIDATES,
    CONSUMER,
    PROVIDER,
    REQUIREMENTS,
    app_proto,
    candidates_proto,
    endpoint_proto,
)

# --- helpers ---------------------------------------------------------------------


def test_build_prefixes_violations() -> None:
    assert w.build("app.resources", Resources, memory_mib=6) == Resources(0, 6)
    with invalid("app.resources.memory_mib", "is 3"):
        w.build("app.resources", Resources, memory_mib=3)
    with invalid("memory_mib"):
        w.build("", Resources, memory_mib=3)


def test_build_lets_other_errors_through() -> None:
    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        w.build("field", boom)


def test_required() -> None:
    msg = common_pb2.SystemInfo()
    with invalid("system_info.endpoint", "^is required$"):
        w.required(msg, "endpoint", "system_info.endpoint")
    with invalid("x", r"^is required \(a hint\)$"):
        w.required(msg, "endpoint", "x", "a hint")
    msg.endpoint.alternative = "a"
    assert w.required(msg, "endpoint", "x") is msg.endpoint


def test_join() -> None:
    assert w.join("", "a") == "a"
    assert w.join("p", "a") == "p.a"
    assert w.join("p[1]", "a") == "p[1].a"


@pytest.mark.parametrize("seconds", [0.0, 1.5, 1_767_225_600.25, 1_767_225_600.123456])
def test_timestamps(seconds: float) -> None:
    stamp = w.ts(seconds)
    assert isinstance(stamp, Timestamp)
    assert w.from_ts(stamp) == pytest.approx(seconds, abs=1e-6)


# --- app ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "app",
    [
        APP,
        AppSpec("nginx"),
        AppSpec("a@sha256:" + "0" * 64, 16, Resources(64_000, 262_144), 65535),
        AppSpec("nginx", 1, Resources(0, 6), 1),
    ],
)
def test_app_round_trip(app: AppSpec) -> None:
    assert w.app_from_proto(w.app_to_proto(app)) == app


def test_app_defaults() -> None:
    # echo_port 0 (unset) is the echo service's port; resources unset is best effort.
    app = w.app_from_proto(common_pb2.AppSpec(image="nginx", replicas=2))
    assert app == AppSpec("nginx", 2, Resources(0, 0), 7)


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (app_proto(memory_mib=5), "app.resources.memory_mib", "is 5; it must be 0 or at least 6"),
        (app_proto(memory_mib=262_145), "app.resources.memory_mib", "is 262145"),
        (app_proto(cpu_millicores=64_001), "app.resources.cpu_millicores", "is 64001"),
        (app_proto(image=""), "app.image", "is required"),
        (app_proto(image="Nginx"), "app.image", "not a valid image reference"),
        (app_proto(replicas=0), "app.replicas", "is 0"),
        (app_proto(replicas=17), "app.replicas", "is 17"),
        (app_proto(echo_port=65536), "app.echo_port", "is 65536"),
    ],
)
def test_app_violations_have_full_paths(msg: common_pb2.AppSpec, field: str, match: str) -> None:
    with invalid(field, match):
        w.app_from_proto(msg)


def test_app_field_prefix_is_the_callers() -> None:
    with invalid("spec.resources.memory_mib"):
        w.app_from_proto(app_proto(memory_mib=1), "spec")
    with invalid("spec.image"):
        w.app_from_proto(app_proto(image="-x"), "spec")


# --- requirements --------------------------------------------------------------------


def test_requirements_round_trip() -> None:
    assert w.requirements_from_proto(w.requirements_to_proto(REQUIREMENTS)) == REQUIREMENTS
    edge = Requirements(10**15, 64, 600_000)
    assert w.requirements_from_proto(w.requirements_to_proto(edge)) == edge


def test_requirements_defaults() -> None:
    # offers_to_wait_for 0 -> 1, offer_timeout_ms 0 -> 3000
    req = w.requirements_from_proto(common_pb2.Requirements(max_price=9))
    assert req == Requirements(9, offers_to_wait_for=1, offer_timeout_ms=3000)


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (common_pb2.Requirements(), "requirements.max_price", "must be greater than 0"),
        (common_pb2.Requirements(max_price=10**15 + 1), "requirements.max_price", "at most"),
        (
            common_pb2.Requirements(max_price=1, offers_to_wait_for=65),
            "requirements.offers_to_wait_for",
            "is 65",
        ),
        (
            common_pb2.Requirements(max_price=1, offer_timeout_ms=600_001),
            "requirements.offer_timeout_ms",
            "is 600001",
        ),
    ],
)
def test_requirements_violations(msg: common_pb2.Requirements, field: str, match: str) -> None:
    with invalid(field, match):
        w.requirements_from_proto(msg)


# --- tunnel candidates and endpoints ------------------------------------------------------


def test_candidates_round_trip() -> None:
    protos = [w.candidate_to_proto(c) for c in CANDIDATES]
    assert w.candidates_from_proto(protos) == CANDIDATES
    assert w.candidate_from_proto(protos[0], "x") == CANDIDATES[0]
    assert w.candidates_from_proto([]) == ()


@pytest.mark.parametrize(
    ("pairs", "field", "match"),
    [
        (((1, 4789), (2, 4789), (0, 4789)), "candidates[2].vni", "is 0"),
        (((2**24, 4789),), "candidates[0].vni", "is 16777216"),
        (((1, 4789), (2, 1023)), "candidates[1].udp_port", "is 1023"),
        (((1, 65536),), "candidates[0].udp_port", "is 65536"),
    ],
)
def test_candidate_violations(pairs: tuple[tuple[int, int], ...], field: str, match: str) -> None:
    with invalid(field, match):
        w.candidates_from_proto(candidates_proto(*pairs))
    with invalid(field.replace("candidates", "order.candidates"), match):
        w.candidates_from_proto(candidates_proto(*pairs), "order.candidates")


@pytest.mark.parametrize(
    "endpoint",
    [
        CONSUMER,
        PROVIDER,
        OverlayEndpoint("10.0.0.1", "10.1.2.0/24"),
        OverlayEndpoint("10.0.0.1", "10.1.2.0/24", (), 2**24 - 1, 65535),
    ],
)
def test_endpoint_round_trip(endpoint: OverlayEndpoint) -> None:
    assert w.endpoint_from_proto(w.endpoint_to_proto(endpoint), "e") == endpoint


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (
            endpoint_proto(app_ips=["10.9.0.2", "10.8.0.2"]),
            "consumer_endpoint.app_ips[1]",
            "outside",
        ),
        (endpoint_proto(app_ips=["10.9.0.2", "x"]), "consumer_endpoint.app_ips[1]", "not an IPv4"),
        (endpoint_proto(app_ips=["10.9.0.255"]), "consumer_endpoint.app_ips[0]", "not a host"),
        (endpoint_proto(app_ips=["10.9.0.2"] * 2), "consumer_endpoint.app_ips", "twice"),
        (endpoint_proto(underlay_ip=""), "consumer_endpoint.underlay_ip", "is required"),
        (endpoint_proto(underlay_ip="127.0.0.1"), "consumer_endpoint.underlay_ip", "unicast"),
        (endpoint_proto(underlay_ip="::1"), "consumer_endpoint.underlay_ip", "IPv6"),
        (endpoint_proto(subnet=""), "consumer_endpoint.subnet", "is required"),
        (endpoint_proto(subnet="10.9.0.0/16"), "consumer_endpoint.subnet", "must be a /24"),
        (endpoint_proto(subnet="10.9.0.7/24"), "consumer_endpoint.subnet", "CIDR"),
        (endpoint_proto(vni=5), "consumer_endpoint.udp_port", "is 0"),
        (endpoint_proto(udp_port=4789), "consumer_endpoint.vni", "is 0"),
        (endpoint_proto(vni=2**24, udp_port=4789), "consumer_endpoint.vni", "is 16777216"),
    ],
)
def test_endpoint_violations(msg: common_pb2.OverlayEndpoint, field: str, match: str) -> None:
    with invalid(field, match):
        w.endpoint_from_proto(msg, "consumer_endpoint")


# --- traffic, problems, steps ---------------------------------------------------------------


def test_traffic_round_trip() -> None:
    report = TrafficReport(20, 19, rtt_ms=0.5, rtt_max_ms=1.25)
    msg = w.traffic_to_proto(report)
    assert msg.loss == pytest.approx(0.05)
    assert w.traffic_from_proto(msg) == report


def test_traffic_warmup_is_not_on_the_wire() -> None:
    report = TrafficReport(5, 5, 1.0, 2.0, warmup_ms=300.0)
    assert w.traffic_from_proto(w.traffic_to_proto(report)) == TrafficReport(5, 5, 1.0, 2.0)


def test_problem_round_trip() -> None:
    problem = Problem("DeploymentFailed", 409, "no image")
    msg = w.problem_to_proto(problem)
    assert msg.type == "about:blank"
    assert w.problem_from_proto(msg) == problem


def test_step_to_proto() -> None:
    msg = w.step_to_proto(Step("deploy", 100.25, 102.5))
    assert msg.name == "deploy"
    assert w.from_ts(msg.started_at) == pytest.approx(100.25)
    assert w.from_ts(msg.finished_at) == pytest.approx(102.5)


# --- MEC 040 endpoints and systems ---------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        EndPoint(uris=("https://a.example:50051",)),
        EndPoint(uris=tuple(f"https://{i}.example" for i in range(16))),
        EndPoint(fqdn=("a.example", "b.example")),
        EndPoint(addresses=(("10.0.0.1", 50051), ("::1", 1))),
        EndPoint(alternative="chain:0xabc"),
    ],
)
def test_endpoint_info_round_trip(endpoint: EndPoint) -> None:
    msg = w.endpoint_info_to_proto(endpoint)
    assert w.endpoint_info_from_proto(msg) == endpoint
    assert msg.WhichOneof("endpoint") == next(
        n for n in ("uris", "fqdn", "addresses", "alternative") if getattr(endpoint, n) is not None
    )


def test_endpoint_info_from_empty_proto_is_rejected() -> None:
    with invalid("endpoint", "must set exactly one of uris, fqdn, addresses, alternative$"):
        w.endpoint_info_from_proto(common_pb2.EndPointInfo())
    msg = common_pb2.EndPointInfo()
    msg.uris.SetInParent()
    with invalid("endpoint.uris", "must not be empty"):
        w.endpoint_info_from_proto(msg)


def address_info(*pairs: tuple[str, int]) -> common_pb2.EndPointInfo:
    msg = common_pb2.EndPointInfo()
    msg.addresses.addresses.extend(common_pb2.Address(host=h, port=p) for h, p in pairs)
    return msg


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (common_pb2.EndPointInfo(alternative=""), "endpoint.alternative", "is required"),
        (
            common_pb2.EndPointInfo(uris=common_pb2.EndPointInfo.Uris(uris=["ok", ""])),
            "endpoint.uris[1]",
            "is required",
        ),
        (
            common_pb2.EndPointInfo(fqdn=common_pb2.EndPointInfo.Fqdns(fqdn=["x" * 257])),
            "endpoint.fqdn[0]",
            "is 257",
        ),
        (address_info(("h", 0)), "endpoint.addresses[0].port", "is 0"),
        (address_info(("h", 1), ("h", 70_000)), "endpoint.addresses[1].port", "is 70000"),
        (address_info(("", 80)), "endpoint.addresses[0].host", "is required"),
        (address_info(*[("h", 1)] * 17), "endpoint.addresses", "at most 16"),
    ],
)
def test_endpoint_info_violations(msg: common_pb2.EndPointInfo, field: str, match: str) -> None:
    with invalid(field, match):
        w.endpoint_info_from_proto(msg)


def test_endpoint_info_field_prefix() -> None:
    with invalid("system_info.endpoint.addresses[0].port"):
        w.endpoint_info_from_proto(address_info(("h", 0)), "system_info.endpoint")


def info(**kw: object) -> common_pb2.SystemInfo:
    fields: dict[str, object] = {"system_name": "edge-a", "system_provider": "op-a"}
    fields.update(kw)
    return common_pb2.SystemInfo(**fields)  # type: ignore[arg-type]


def test_system_round_trip() -> None:
    msg = info(system_id="abc")
    msg.endpoint.uris.uris.append("https://edge-a.example:50051")
    rec = w.system_from_proto(msg)
    assert rec == SystemRecord(
        "abc", "edge-a", "op-a", EndPoint(uris=("https://edge-a.example:50051",))
    )
    assert w.system_to_proto(rec) == msg
    for record in (
        SystemRecord("", "n", "p"),
        SystemRecord("id", "n", "p", EndPoint(addresses=(("10.0.0.1", 1),))),
    ):
        assert w.system_from_proto(w.system_to_proto(record)) == record


def test_system_without_endpoint() -> None:
    rec = w.system_from_proto(info())
    assert rec.endpoint is None
    assert not w.system_to_proto(rec).HasField("endpoint")


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (info(system_name=""), "system_info.system_name", "is required"),
        (info(system_provider=""), "system_info.system_provider", "is required"),
        (info(system_name="x" * 129), "system_info.system_name", "is 129 characters long"),
        (info(system_provider="x" * 129), "system_info.system_provider", "is 129"),
        (info(system_id="i" * 129), "system_info.system_id", "is 129"),
        (info(endpoint=common_pb2.EndPointInfo()), "system_info.endpoint", "exactly one of"),
        (info(endpoint=address_info(("h", 0))), "system_info.endpoint.addresses[0].port", "is 0"),
        (
            info(endpoint=common_pb2.EndPointInfo(uris=common_pb2.EndPointInfo.Uris(uris=[""]))),
            "system_info.endpoint.uris[0]",
            "is required",
        ),
    ],
)
def test_system_violations(msg: common_pb2.SystemInfo, field: str, match: str) -> None:
    with invalid(field, match):
        w.system_from_proto(msg)


def test_system_field_prefix() -> None:
    with invalid("peers[3].system_name"):
        w.system_from_proto(info(system_name=""), "peers[3]")
    with invalid("peers[3].endpoint.addresses[0].port"):
        w.system_from_proto(info(endpoint=address_info(("h", 0))), "peers[3]")


def test_wrong_argument_is_invalid_argument_not_other_error() -> None:
    # Every *_from_proto reports through InvalidArgument, never ValueError.
    for call in (
        lambda: w.endpoint_from_proto(endpoint_proto(subnet="nope"), "e"),
        lambda: w.app_from_proto(common_pb2.AppSpec()),
        lambda: w.candidates_from_proto(candidates_proto((0, 0))),
    ):
        with pytest.raises(InvalidArgument):
            call()
