"""Tests for mecfed.wire.orchestrator: the MEO's Mfm messages, both ways."""

from __future__ import annotations

import pytest

from mecfed.errors import InvalidArgument
from mecfed.model import (
    App,
    AppInstance,
    AppSpec,
    DeploymentOrder,
    InstanceState,
    OverlayEndpoint,
    OverlayReservation,
    Resources,
    Role,
    ServiceStatus,
    TrafficCheck,
    TunnelCandidate,
)
from mecfed.v1 import common_pb2
from mecfed.v1 import orchestrator_pb2 as pb
from mecfed.wire import common as wc
from mecfed.wire import orchestrator as w
from tests.model.support import invalid
from tests.wire.samples import (
    APP,
    CANDIDATES,
    CONSUMER,
    PROVIDER,
    app_proto,
    candidates_proto,
    endpoint_proto,
)

# --- apps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inst",
    [
        AppInstance("i1", "host-a"),
        AppInstance("i2", "host-b", InstanceState.FAILED, ("10.9.0.2", "10.9.0.3")),
        AppInstance("i3", "host-c", InstanceState.TERMINATED),
    ],
)
def test_instance_round_trip(inst: AppInstance) -> None:
    assert w.instance_from_proto(w.instance_to_proto(inst)) == inst


def test_instance_unset_state_is_pending() -> None:
    assert w.instance_from_proto(pb.AppInstance(instance_id="i")).state == InstanceState.PENDING


def test_instance_unknown_state_is_no_bare_value_error() -> None:
    # A newer MEO may send a state this one does not know: the reply must be
    # refused as InvalidArgument or read as some known state, never crash the
    # caller with a ValueError (which would surface as INTERNAL).
    try:
        inst = w.instance_from_proto(pb.AppInstance(instance_id="i", state=9))  # type: ignore[arg-type]
    except InvalidArgument:
        return
    assert inst.state in set(InstanceState)


def test_app_record_to_proto() -> None:
    app = App("echo", APP, (AppInstance("i1", "h", overlay_ips=("10.9.0.2",)),), "fed-1")
    msg = w.app_record_to_proto(app)
    assert (msg.name, msg.federation_id) == ("echo", "fed-1")
    assert wc.app_from_proto(msg.spec) == APP
    assert [w.instance_from_proto(i) for i in msg.instances] == list(app.instances)


def test_create_app_from_proto() -> None:
    name, spec = w.create_app_from_proto(
        pb.CreateAppRequest(name="echo", spec=app_proto(replicas=2))
    )
    assert (name, spec) == ("echo", AppSpec("nginx", 2, Resources(), 7))


def test_create_app_violations() -> None:
    with invalid("spec", "^is required$"):
        w.create_app_from_proto(pb.CreateAppRequest(name="echo"))
    with invalid("name", "is required"):
        w.create_app_from_proto(pb.CreateAppRequest(spec=app_proto()))
    with invalid("name"):
        w.create_app_from_proto(pb.CreateAppRequest(name="Echo", spec=app_proto()))
    with invalid("spec.resources.memory_mib", "is 1"):
        w.create_app_from_proto(pb.CreateAppRequest(name="echo", spec=app_proto(memory_mib=1)))
    with invalid("spec.image"):
        w.create_app_from_proto(pb.CreateAppRequest(name="echo", spec=app_proto(image="a:")))


def test_app_name_from() -> None:
    assert w.app_name_from("echo") == "echo"
    with invalid("name", "is required"):
        w.app_name_from("")


# --- provider side -----------------------------------------------------------------------


ORDER = DeploymentOrder("fed-1", "consumer-1", APP, CONSUMER, CANDIDATES)


def deploy_proto(**kw: object) -> pb.DeployFederatedServiceRequest:
    msg = w.deploy_to_proto(ORDER)
    for name, value in kw.items():
        if name in ("app", "consumer_endpoint"):
            getattr(msg, name).CopyFrom(value)
        elif name == "candidates":
            del msg.candidates[:]
            msg.candidates.extend(value)  # type: ignore[arg-type]
        else:
            setattr(msg, name, value)
    return msg


def test_deploy_round_trip() -> None:
    assert w.deploy_from_proto(w.deploy_to_proto(ORDER)) == ORDER
    one = DeploymentOrder(
        "f",
        "c",
        AppSpec("nginx"),
        OverlayEndpoint("10.0.0.1", "10.1.0.0/24"),
        (TunnelCandidate(1, 1024),),
    )
    assert w.deploy_from_proto(w.deploy_to_proto(one)) == one


def test_deploy_missing_parts() -> None:
    msg = deploy_proto()
    msg.ClearField("app")
    with invalid("app", "^is required$"):
        w.deploy_from_proto(msg)
    msg = deploy_proto()
    msg.ClearField("consumer_endpoint")
    with invalid("consumer_endpoint", "^is required$"):
        w.deploy_from_proto(msg)


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (deploy_proto(federation_id=""), "federation_id", "is required"),
        (deploy_proto(consumer_id="bad id"), "consumer_id", "not a valid id"),
        (deploy_proto(app=app_proto(memory_mib=2)), "app.resources.memory_mib", "is 2"),
        (deploy_proto(app=app_proto(echo_port=70_000)), "app.echo_port", "is 70000"),
        (
            deploy_proto(consumer_endpoint=endpoint_proto(app_ips=["10.9.0.2", "10.7.0.1"])),
            "consumer_endpoint.app_ips[1]",
            "is outside",
        ),
        (
            deploy_proto(consumer_endpoint=endpoint_proto(underlay_ip="224.0.0.1")),
            "consumer_endpoint.underlay_ip",
            "unicast",
        ),
        (
            deploy_proto(candidates=candidates_proto((1, 4789), (2, 4789), (0, 4789))),
            "candidates[2].vni",
            "is 0",
        ),
        (deploy_proto(candidates=candidates_proto((1, 80))), "candidates[0].udp_port", "is 80"),
        (deploy_proto(candidates=[]), "candidates", "has 0 entries"),
        (
            deploy_proto(candidates=candidates_proto(*[(i, 4789) for i in range(1, 18)])),
            "candidates",
            "has 17 entries",
        ),
        (deploy_proto(candidates=candidates_proto((5, 4789), (5, 4789))), "candidates", "twice"),
    ],
)
def test_deploy_violations(msg: pb.DeployFederatedServiceRequest, field: str, match: str) -> None:
    with invalid(field, match):
        w.deploy_from_proto(msg)


def test_deployed_round_trip() -> None:
    instances = (AppInstance("i1", "h", overlay_ips=("10.9.0.130",)),)
    msg = w.deployed_to_proto(PROVIDER, instances)
    assert [w.instance_from_proto(i) for i in msg.instances] == list(instances)
    assert w.deployed_from_proto(msg) == PROVIDER


def test_deployed_needs_a_tunnel() -> None:
    untunneled = OverlayEndpoint("192.168.2.20", "10.9.0.0/24", ("10.9.0.130",))
    with invalid("provider_endpoint.vni", r"is required \(no tunnel was chosen\)"):
        w.deployed_from_proto(w.deployed_to_proto(untunneled, ()))


def test_deployed_needs_an_endpoint() -> None:
    with pytest.raises(InvalidArgument) as info:
        w.deployed_from_proto(pb.DeployFederatedServiceResponse())
    (violation,) = info.value.violations
    assert (
        violation.field.startswith("provider_endpoint") and "is required" in violation.description
    )


def test_deployed_endpoint_is_validated() -> None:
    msg = pb.DeployFederatedServiceResponse(
        provider_endpoint=endpoint_proto(vni=1, udp_port=4789, app_ips=["10.9.0.0"])
    )
    with invalid("provider_endpoint.app_ips[0]", "not a host address"):
        w.deployed_from_proto(msg)


# --- consumer side -------------------------------------------------------------------------


def test_reserve_from_proto() -> None:
    assert w.reserve_from_proto(pb.ReserveOverlayRequest(federation_id="f")) == ("f", 4)
    assert w.reserve_from_proto(pb.ReserveOverlayRequest(federation_id="f", candidates=1)) == (
        "f",
        1,
    )
    assert w.reserve_from_proto(pb.ReserveOverlayRequest(federation_id="f", candidates=16)) == (
        "f",
        16,
    )
    with invalid("candidates", "is 17; it must be 1..16"):
        w.reserve_from_proto(pb.ReserveOverlayRequest(federation_id="f", candidates=17))
    with invalid("federation_id", "is required"):
        w.reserve_from_proto(pb.ReserveOverlayRequest())


def test_reservation_round_trip() -> None:
    res = OverlayReservation(OverlayEndpoint("192.168.1.10", "10.9.0.0/24"), CANDIDATES)
    assert w.reservation_from_proto(w.reservation_to_proto(res)) == res


def test_reservation_violations() -> None:
    with pytest.raises(InvalidArgument) as info:
        w.reservation_from_proto(pb.ReserveOverlayResponse(candidates=candidates_proto((1, 4789))))
    (violation,) = info.value.violations
    assert (
        violation.field.startswith("consumer_endpoint") and "is required" in violation.description
    )
    msg = pb.ReserveOverlayResponse(
        consumer_endpoint=endpoint_proto(), candidates=candidates_proto((1, 4789), (1, 4789))
    )
    with invalid("candidates", "twice"):
        w.reservation_from_proto(msg)
    msg = pb.ReserveOverlayResponse(
        consumer_endpoint=endpoint_proto(), candidates=candidates_proto((1, 4789), (0, 1))
    )
    with invalid("candidates[1].vni"):
        w.reservation_from_proto(msg)
    with invalid("candidates", "has 0 entries"):
        w.reservation_from_proto(pb.ReserveOverlayResponse(consumer_endpoint=endpoint_proto()))
    msg = pb.ReserveOverlayResponse(
        consumer_endpoint=endpoint_proto(subnet="10.9.0.0/25"),
        candidates=candidates_proto((1, 4789)),
    )
    with invalid("consumer_endpoint.subnet", "/24"):
        w.reservation_from_proto(msg)


def connect_proto(**kw: object) -> pb.ConnectOverlayRequest:
    fields: dict[str, object] = {
        "federation_id": "fed-1",
        "service_name": "svc",
        "provider_endpoint": wc.endpoint_to_proto(PROVIDER),
    }
    fields.update(kw)
    return pb.ConnectOverlayRequest(**fields)  # type: ignore[arg-type]


def test_connect_from_proto() -> None:
    assert w.connect_from_proto(connect_proto()) == ("fed-1", "svc", PROVIDER)


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (connect_proto(federation_id=""), "federation_id", "is required"),
        (connect_proto(service_name=""), "service_name", "is required"),
        (connect_proto(service_name="svc_1"), "service_name", "must be 1..63"),
        (connect_proto(provider_endpoint=None), "provider_endpoint", "^is required$"),
        (
            connect_proto(provider_endpoint=endpoint_proto(app_ips=["10.9.0.2"])),
            "provider_endpoint.vni",
            "no tunnel",
        ),
        (
            connect_proto(provider_endpoint=endpoint_proto(vni=3, udp_port=4789)),
            "provider_endpoint.app_ips",
            "must name at least one instance",
        ),
        (
            connect_proto(
                provider_endpoint=endpoint_proto(
                    vni=3, udp_port=4789, app_ips=["10.9.0.2", "10.9.1.2"]
                )
            ),
            "provider_endpoint.app_ips[1]",
            "is outside",
        ),
        (
            connect_proto(provider_endpoint=endpoint_proto(vni=3, udp_port=99)),
            "provider_endpoint.udp_port",
            "is 99",
        ),
    ],
)
def test_connect_violations(msg: pb.ConnectOverlayRequest, field: str, match: str) -> None:
    with invalid(field, match):
        w.connect_from_proto(msg)


def test_traffic_check_defaults() -> None:
    assert w.traffic_check_from_proto(pb.VerifyTrafficRequest(federation_id="f")) == (
        "f",
        TrafficCheck(),
    )
    assert TrafficCheck() == TrafficCheck(20, 10, 500, 7)
    msg = pb.VerifyTrafficRequest(federation_id="f", count=5)
    assert w.traffic_check_from_proto(msg) == ("f", TrafficCheck(count=5))


@pytest.mark.parametrize(
    "check",
    [
        TrafficCheck(),
        TrafficCheck(1, 1, 1, 1),
        TrafficCheck(1000, 1000, 10_000, 65535),
        TrafficCheck(3, 50, 200, 7007),
    ],
)
def test_traffic_check_round_trip(check: TrafficCheck) -> None:
    assert w.traffic_check_from_proto(w.traffic_check_to_proto("fed-1", check)) == ("fed-1", check)


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (pb.VerifyTrafficRequest(), "federation_id", "is required"),
        (pb.VerifyTrafficRequest(federation_id="f", count=1001), "count", "is 1001"),
        (pb.VerifyTrafficRequest(federation_id="f", interval_ms=1001), "interval_ms", "is 1001"),
        (pb.VerifyTrafficRequest(federation_id="f", timeout_ms=10_001), "timeout_ms", "is 10001"),
        (pb.VerifyTrafficRequest(federation_id="f", echo_port=65_536), "echo_port", "is 65536"),
    ],
)
def test_traffic_check_violations(msg: pb.VerifyTrafficRequest, field: str, match: str) -> None:
    with invalid(field, match):
        w.traffic_check_from_proto(msg)


def test_status_to_proto() -> None:
    inst = AppInstance("i1", "h", overlay_ips=("10.9.0.2",))
    full = ServiceStatus("fed-1", Role.CONSUMER, (inst,), CONSUMER, PROVIDER, ("vxlan4242",))
    msg = w.status_to_proto(full)
    assert (msg.federation_id, msg.role, list(msg.links)) == ("fed-1", "consumer", ["vxlan4242"])
    assert [w.instance_from_proto(i) for i in msg.instances] == [inst]
    assert wc.endpoint_from_proto(msg.local_endpoint, "l") == CONSUMER
    assert wc.endpoint_from_proto(msg.remote_endpoint, "r") == PROVIDER
    bare = w.status_to_proto(ServiceStatus("fed-2", Role.PROVIDER))
    assert bare.role == "provider"
    assert not bare.HasField("local_endpoint") and not bare.HasField("remote_endpoint")


def test_instance_state_values_match_the_proto() -> None:
    for state in InstanceState:
        assert w.instance_to_proto(AppInstance("i", "h", state)).state == getattr(
            common_pb2, f"INSTANCE_STATE_{state.name}"
        )


# --- runtime liveness, ListServices, (consumer, id) keys --------------------------


def test_watch_traffic_defaults_and_round_trip() -> None:
    assert w.watch_traffic_from_proto(pb.WatchTrafficRequest(federation_id="f")) == (
        "f",
        TrafficCheck(),
        2000,
    )
    check = TrafficCheck(3, 1, 100, 7007)
    for period in (100, 2500, 3_600_000):
        msg = w.watch_traffic_to_proto("fed-1", check, period)
        assert w.watch_traffic_from_proto(msg) == ("fed-1", check, period)


@pytest.mark.parametrize(
    ("msg", "field", "match"),
    [
        (pb.WatchTrafficRequest(), "federation_id", "is required"),
        (pb.WatchTrafficRequest(federation_id="a/b"), "federation_id", "not a valid id"),
        (pb.WatchTrafficRequest(federation_id="f", period_ms=99), "period_ms", "is 99"),
        (
            pb.WatchTrafficRequest(federation_id="f", period_ms=3_600_001),
            "period_ms",
            "is 3600001",
        ),
        (pb.WatchTrafficRequest(federation_id="f", count=1001), "count", "is 1001"),
        (pb.WatchTrafficRequest(federation_id="f", interval_ms=1001), "interval_ms", "is 1001"),
        (pb.WatchTrafficRequest(federation_id="f", timeout_ms=10_001), "timeout_ms", "is 10001"),
        (pb.WatchTrafficRequest(federation_id="f", echo_port=65_536), "echo_port", "is 65536"),
    ],
)
def test_watch_traffic_violations(msg: pb.WatchTrafficRequest, field: str, match: str) -> None:
    with invalid(field, match):
        w.watch_traffic_from_proto(msg)


def test_service_keys() -> None:
    for cls in (pb.ReleaseServiceRequest, pb.GetServiceStatusRequest):
        assert w.service_key_from(cls(federation_id="f")) == ("f", "")
        assert w.service_key_from(cls(federation_id="f", consumer_id="sys-b")) == ("f", "sys-b")
        with invalid("consumer_id", "not a valid id"):
            w.service_key_from(cls(federation_id="f", consumer_id="a b"))
        with invalid("federation_id", "is required"):
            w.service_key_from(cls(consumer_id="sys-b"))


def test_services_round_trip_with_the_consumer() -> None:
    services = [
        ServiceStatus("fed-1", Role.PROVIDER, links=("mfb1",), consumer_id="sys-b"),
        ServiceStatus("fed-1", Role.CONSUMER),
    ]
    msg = w.services_to_proto(services)
    assert [w.status_from_proto(s) for s in msg.services] == services
