"""Both ends of a federation's overlay through a real server (fake VIM and
fake host networking, no root): the provider's deploy, the consumer's
reserve / connect / verify, release and status; hostile input at every
overlay RPC and lifecycle misuse, each refused with its code and leaving
nothing behind."""

from __future__ import annotations

import grpc
import pytest
from meo_fakes import (
    INVALID,
    OWN_UNDERLAY,
    PEER_UNDERLAY,
    bad_field,
    code_of,
    deploy_request,
    reserved,
    spec,
)

from mecfed.v1 import common_pb2
from mecfed.v1 import orchestrator_pb2 as pb

_code = code_of
_spec = spec


_deploy = deploy_request


async def test_deploy_validation(meo):
    stub, _ = meo
    ep = common_pb2.OverlayEndpoint
    cases = [
        (_deploy(federation_id=""), "federation_id is required"),
        (_deploy(federation_id="a b"), "federation_id"),
        (_deploy(federation_id="x" * 65), "federation_id"),
        (_deploy(consumer_id=""), "consumer_id is required"),
        (_deploy(app=_spec(replicas=0)), "app.replicas"),
        (_deploy(app=_spec(replicas=99)), "app.replicas"),
        (
            _deploy(consumer_endpoint=ep(underlay_ip="300.1.1.1", subnet="172.30.3.0/24")),
            "underlay_ip",
        ),
        (_deploy(consumer_endpoint=ep(underlay_ip="192.0.2.2", subnet="nonsense")), "subnet"),
        (_deploy(consumer_endpoint=ep(underlay_ip="192.0.2.2", subnet="10.0.0.0/16")), "/24"),
        (_deploy(candidates=[]), "candidates"),
        (_deploy(candidates=[common_pb2.TunnelCandidate(vni=0, udp_port=4790)]), "vni"),
        (_deploy(candidates=[common_pb2.TunnelCandidate(vni=1, udp_port=80)]), "udp_port"),
        (
            _deploy(candidates=[common_pb2.TunnelCandidate(vni=1, udp_port=4790)] * 17),
            "candidates",
        ),
    ]
    for req, text in cases:
        code, details = await _code(stub.DeployFederatedService(req))
        assert code == INVALID, (text, details)
        assert text in details, details


async def test_provider_deploy_and_release(meo):
    stub, orch = meo
    resp = await stub.DeployFederatedService(_deploy())
    ep = resp.provider_endpoint
    assert (ep.vni, ep.udp_port, ep.underlay_ip) == (1234, 4790, "192.0.2.1")
    assert list(ep.app_ips) == ["172.30.3.129", "172.30.3.130"]
    code, _ = await _code(stub.DeployFederatedService(_deploy()))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    # Another federation offering only the same tunnel gets RESOURCE_EXHAUSTED.
    code, _ = await _code(stub.DeployFederatedService(_deploy(federation_id="fed-2")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = await stub.GetServiceStatus(
        pb.GetServiceStatusRequest(federation_id="fed-1", consumer_id="sys-b")
    )
    assert status.role == "provider" and len(status.links) == 4
    (fed_app,) = (await stub.ListApps(pb.ListAppsRequest())).apps
    assert fed_app.federation_id == "fed-1"
    code, _ = await _code(stub.DeleteApp(pb.DeleteAppRequest(name=fed_app.name)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # provider apps go with ReleaseService
    # Keyed by (consumer, id): without the consumer it names our own (consumer) side.
    await stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="fed-1"))
    assert len(next(iter(orch.vims.values())).instances) == 2
    for _ in range(2):
        await stub.ReleaseService(
            pb.ReleaseServiceRequest(federation_id="fed-1", consumer_id="sys-b")
        )
    await stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="never-seen"))
    assert next(iter(orch.vims.values())).instances == {}
    assert (await stub.ListApps(pb.ListAppsRequest())).apps == []
    code, _ = await _code(
        stub.GetServiceStatus(
            pb.GetServiceStatusRequest(federation_id="fed-1", consumer_id="sys-b")
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND


async def test_consumer_validation(meo):
    stub, _ = meo
    code, _ = await _code(
        stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="f", candidates=17))
    )
    assert code == INVALID
    code, _ = await _code(stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="")))
    assert code == INVALID
    res = await stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="f"))
    assert len(res.candidates) == 4 and res.consumer_endpoint.underlay_ip == "192.0.2.1"
    provider = common_pb2.OverlayEndpoint(
        underlay_ip="192.0.2.9",
        vni=res.candidates[1].vni,
        udp_port=res.candidates[1].udp_port,
        subnet=res.consumer_endpoint.subnet,
        app_ips=[res.consumer_endpoint.subnet.replace("0/24", "129")],
    )
    connect = pb.ConnectOverlayRequest(
        federation_id="f", service_name="client", provider_endpoint=provider
    )
    code, details = await _code(stub.ConnectOverlay(connect))
    assert code == grpc.StatusCode.NOT_FOUND and "client" in details
    await stub.CreateApp(pb.CreateAppRequest(name="client", spec=_spec()))
    unknown = pb.ConnectOverlayRequest()
    unknown.CopyFrom(connect)
    unknown.federation_id = "other"
    code, _ = await _code(stub.ConnectOverlay(unknown))
    assert code == grpc.StatusCode.NOT_FOUND
    wrong = pb.ConnectOverlayRequest()
    wrong.CopyFrom(connect)
    wrong.provider_endpoint.vni = 1
    code, details = await _code(stub.ConnectOverlay(wrong))
    assert code == INVALID and "not one of the candidates" in details
    bad_ip = pb.ConnectOverlayRequest()
    bad_ip.CopyFrom(connect)
    bad_ip.provider_endpoint.app_ips.append("10.9.9.9")
    code, details = await _code(stub.ConnectOverlay(bad_ip))
    assert code == INVALID and "outside" in details
    con = await stub.ConnectOverlay(connect)
    assert con.consumer_endpoint.vni == res.candidates[1].vni
    assert list(con.consumer_endpoint.app_ips) == [
        res.consumer_endpoint.subnet.replace("0/24", "1")
    ]
    code, _ = await _code(stub.ConnectOverlay(connect))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    for req in (
        pb.VerifyTrafficRequest(federation_id="f", count=1001),
        pb.VerifyTrafficRequest(federation_id="f", interval_ms=1001),
        pb.VerifyTrafficRequest(federation_id="f", timeout_ms=10001),
    ):
        code, _ = await _code(stub.VerifyTraffic(req))
        assert code == INVALID
    code, _ = await _code(stub.VerifyTraffic(pb.VerifyTrafficRequest(federation_id="zzz")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await _code(stub.DeleteApp(pb.DeleteAppRequest(name="client")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    await stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="f"))
    await stub.DeleteApp(pb.DeleteAppRequest(name="client"))


# --- hostile requests: provider ------------------------------------------------

EP = common_pb2.OverlayEndpoint
TC = common_pb2.TunnelCandidate


def _consumer(**kw) -> common_pb2.OverlayEndpoint:
    return EP(**{"underlay_ip": PEER_UNDERLAY, "subnet": "172.30.3.0/24", **kw})


def _without(field: str) -> pb.DeployFederatedServiceRequest:
    req = _deploy()
    req.ClearField(field)
    return req


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_without("app"), "app"),
        (_without("consumer_endpoint"), "consumer_endpoint"),
        (_deploy(app=_spec(image="Mecfed/Echo:1")), "app.image"),
        (
            _deploy(app=_spec(resources=common_pb2.Resources(memory_mib=3))),
            "app.resources.memory_mib",
        ),
        (
            _deploy(app=_spec(resources=common_pb2.Resources(cpu_millicores=64_001))),
            "app.resources.cpu_millicores",
        ),
        (_deploy(consumer_endpoint=_consumer(subnet="172.30.0.0/16")), "consumer_endpoint.subnet"),
        (_deploy(consumer_endpoint=_consumer(subnet="172.30.3.7/24")), "consumer_endpoint.subnet"),
        (
            _deploy(consumer_endpoint=_consumer(app_ips=["10.1.1.1"])),
            "consumer_endpoint.app_ips[0]",
        ),
        (
            _deploy(consumer_endpoint=_consumer(app_ips=["172.30.3.1", "172.30.3.255"])),
            "consumer_endpoint.app_ips[1]",
        ),
        (_deploy(consumer_endpoint=_consumer(underlay_ip="")), "consumer_endpoint.underlay_ip"),
        (
            _deploy(consumer_endpoint=_consumer(underlay_ip="2001:db8::1")),
            "consumer_endpoint.underlay_ip",
        ),
        (
            _deploy(consumer_endpoint=_consumer(underlay_ip="224.0.0.1")),
            "consumer_endpoint.underlay_ip",
        ),
        (
            _deploy(consumer_endpoint=_consumer(underlay_ip="0.0.0.0")),
            "consumer_endpoint.underlay_ip",
        ),
        (
            _deploy(consumer_endpoint=_consumer(underlay_ip="127.0.0.1")),
            "consumer_endpoint.underlay_ip",
        ),
        (
            _deploy(consumer_endpoint=_consumer(underlay_ip=OWN_UNDERLAY)),
            "consumer_endpoint.underlay_ip",
        ),
        (_deploy(candidates=[TC(vni=7, udp_port=4790), TC(vni=7, udp_port=4790)]), "candidates"),
        (_deploy(candidates=[TC(vni=16_777_216, udp_port=4790)]), "candidates[0].vni"),
        (_deploy(candidates=[TC(vni=7, udp_port=4790), TC(vni=8)]), "candidates[1].udp_port"),
        (_deploy(consumer_id="a b"), "consumer_id"),
        (_deploy(federation_id="x" * 65), "federation_id"),
    ],
)
async def test_deploy_refuses_bad_input_and_leaves_nothing(env, request_, field):
    assert await bad_field(env.stub.DeployFederatedService(request_)) == [field]
    assert env.leftovers() == {}
    assert env.vim.creates == 0


async def test_deploy_with_a_missing_image_leaves_nothing(env):
    code, details = await code_of(
        env.stub.DeployFederatedService(_deploy(app=_spec(image="absent/image:1")))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not found" in details
    assert env.leftovers() == {}
    # The claim was given back: the same tunnel serves the next deployment.
    assert (await env.stub.DeployFederatedService(_deploy())).provider_endpoint.vni == 1234


@pytest.mark.parametrize("step", ["bridge", "vxlan", "veth0", "veth1"])
async def test_deploy_overlay_failure_at_any_step_leaves_nothing(env, step):
    env.net.fail_at = step
    code, details = await code_of(env.stub.DeployFederatedService(_deploy()))
    assert code == grpc.StatusCode.ABORTED and step in details
    assert env.leftovers() == {}
    env.net.fail_at = ""
    assert (await env.stub.DeployFederatedService(_deploy())).provider_endpoint.vni == 1234


async def test_deploy_vim_failure_half_way_leaves_nothing(env):
    env.vim.fail_on_create = 2
    code, details = await code_of(env.stub.DeployFederatedService(_deploy()))
    assert code == grpc.StatusCode.ABORTED and "raw engine text" not in details
    assert env.leftovers() == {}


async def test_double_deploy_keeps_the_first(env):
    first = await env.stub.DeployFederatedService(_deploy())
    code, _ = await code_of(env.stub.DeployFederatedService(_deploy(app=_spec(replicas=5))))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    status = await env.stub.GetServiceStatus(
        pb.GetServiceStatusRequest(federation_id="fed-1", consumer_id="sys-b")
    )
    assert [i.instance_id for i in status.instances] == [i.instance_id for i in first.instances]
    assert len(env.vim.instances) == 2


async def test_exhausted_candidates_leave_nothing_of_the_refused_federation(env):
    await env.stub.DeployFederatedService(_deploy())
    code, _ = await code_of(env.stub.DeployFederatedService(_deploy(federation_id="fed-2")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert env.orch.summary()["reservations"] == ["sys-b/fed-1"]
    assert set(env.net.links) == {"sys-b/fed-1"} and len(env.vim.instances) == 2


async def test_provider_apps_are_fixed_by_their_federation(env):
    await env.stub.DeployFederatedService(_deploy())
    (app,) = (await env.stub.ListApps(pb.ListAppsRequest())).apps
    code, _ = await code_of(env.stub.ScaleApp(pb.ScaleAppRequest(name=app.name, replicas=3)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, _ = await code_of(env.stub.DeleteApp(pb.DeleteAppRequest(name=app.name)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    # Our own (consumer-side) fed-1 is another federation than sys-b's fed-1.
    await env.stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="fed-1"))
    assert env.orch.summary()["federations"] == ["fed-1", "sys-b/fed-1"]


# --- hostile requests: consumer ------------------------------------------------


_reserved = reserved


def _changed(connect: pb.ConnectOverlayRequest, **endpoint) -> pb.ConnectOverlayRequest:
    out = pb.ConnectOverlayRequest()
    out.CopyFrom(connect)
    for key, value in endpoint.items():
        if key == "app_ips":
            del out.provider_endpoint.app_ips[:]
            out.provider_endpoint.app_ips.extend(value)
        else:
            setattr(out.provider_endpoint, key, value)
    return out


async def test_reserve_refuses_bad_input(env):
    stub = env.stub
    for req, field in (
        (pb.ReserveOverlayRequest(federation_id=""), "federation_id"),
        (pb.ReserveOverlayRequest(federation_id="a/b"), "federation_id"),
        (pb.ReserveOverlayRequest(federation_id="f", candidates=17), "candidates"),
    ):
        assert await bad_field(stub.ReserveOverlay(req)) == [field]
    assert env.leftovers() == {}


async def test_reserve_is_idempotent_until_connected(env):
    res, connect = await _reserved(env)
    again = await env.stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="f"))
    assert again == res
    await env.stub.ConnectOverlay(connect)
    code, _ = await code_of(env.stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="f")))
    assert code == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vni": 0, "udp_port": 0}, "provider_endpoint.vni"),
        ({"udp_port": 80}, "provider_endpoint.udp_port"),
        ({"app_ips": []}, "provider_endpoint.app_ips"),
        ({"app_ips": ["8.8.8.8"]}, "provider_endpoint.app_ips[0]"),
        ({"underlay_ip": OWN_UNDERLAY}, "provider_endpoint.underlay_ip"),
        ({"underlay_ip": "127.0.0.1"}, "provider_endpoint.underlay_ip"),
        ({"underlay_ip": "fe80::1"}, "provider_endpoint.underlay_ip"),
        ({"underlay_ip": "239.1.1.1"}, "provider_endpoint.underlay_ip"),
        ({"subnet": "172.31.99.0/24", "app_ips": ["172.31.99.129"]}, "provider_endpoint.subnet"),
        ({"subnet": "172.31.99.0/25", "app_ips": []}, "provider_endpoint.subnet"),
        ({"vni": 1}, "provider_endpoint.vni"),  # not one of the reserved candidates
    ],
)
async def test_connect_refuses_bad_provider_endpoints(env, change, field):
    _, connect = await _reserved(env)
    assert field in await bad_field(env.stub.ConnectOverlay(_changed(connect, **change)))
    # Nothing was built; the reservation is still there to connect properly.
    assert env.net.links == {} and env.orch.summary()["reservations"] == ["f"]
    app = await env.stub.GetApp(pb.GetAppRequest(name="client"))
    assert not any(i.overlay_ips for i in app.instances)
    assert (await env.stub.ConnectOverlay(connect)).consumer_endpoint.vni


async def test_connect_refuses_missing_parts_and_bad_names(env):
    _, connect = await _reserved(env)
    missing = pb.ConnectOverlayRequest(federation_id="f", service_name="client")
    assert await bad_field(env.stub.ConnectOverlay(missing)) == ["provider_endpoint"]
    for fid, name, field in (("f", "Client", "service_name"), ("", "client", "federation_id")):
        bad = pb.ConnectOverlayRequest()
        bad.CopyFrom(connect)
        bad.federation_id, bad.service_name = fid, name
        assert await bad_field(env.stub.ConnectOverlay(bad)) == [field]
    assert env.net.links == {}


async def test_connect_before_reserve_is_not_found(env):
    _, connect = await _reserved(env)
    connect.federation_id = "never-reserved"
    code, _ = await code_of(env.stub.ConnectOverlay(connect))
    assert code == grpc.StatusCode.NOT_FOUND
    assert env.net.links == {}


async def test_connect_a_provider_app_is_refused(env):
    dep = await env.stub.DeployFederatedService(_deploy())
    (fed_app,) = (await env.stub.ListApps(pb.ListAppsRequest())).apps
    _, connect = await _reserved(env, app=None)
    connect.service_name = fed_app.name
    assert await bad_field(env.stub.ConnectOverlay(connect)) == ["service_name"]
    assert set(env.net.links) == {"sys-b/fed-1"}
    assert dep.provider_endpoint.vni == 1234


async def test_connect_overlay_failure_leaves_nothing_but_the_reservation(env):
    _, connect = await _reserved(env)
    env.net.fail_at = "veth1"
    code, _ = await code_of(env.stub.ConnectOverlay(connect))
    assert code == grpc.StatusCode.ABORTED
    assert env.net.links == {} and env.orch.summary()["reservations"] == ["f"]
    app = await env.stub.GetApp(pb.GetAppRequest(name="client"))
    assert not any(i.overlay_ips for i in app.instances)
    env.net.fail_at = ""
    con = await env.stub.ConnectOverlay(connect)  # the same call succeeds afterwards
    assert len(con.consumer_endpoint.app_ips) == 2


async def test_connect_needs_running_instances(env):
    _, connect = await _reserved(env)
    env.vim.dead.add(next(iter(env.vim.instances)))
    code, _ = await code_of(env.stub.ConnectOverlay(connect))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert env.net.links == {}


async def test_verify_refuses_misuse(env):
    stub = env.stub
    code, _ = await code_of(stub.VerifyTraffic(pb.VerifyTrafficRequest(federation_id="f")))
    assert code == grpc.StatusCode.NOT_FOUND
    await _reserved(env)
    code, _ = await code_of(stub.VerifyTraffic(pb.VerifyTrafficRequest(federation_id="f")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION  # verify before connect
    await stub.DeployFederatedService(_deploy())
    code, _ = await code_of(stub.VerifyTraffic(pb.VerifyTrafficRequest(federation_id="fed-1")))
    assert code == grpc.StatusCode.NOT_FOUND  # the provider end (sys-b's fed-1) is not ours
    for req, field in (
        (pb.VerifyTrafficRequest(federation_id="f", count=1001), "count"),
        (pb.VerifyTrafficRequest(federation_id="f", interval_ms=1001), "interval_ms"),
        (pb.VerifyTrafficRequest(federation_id="f", timeout_ms=10_001), "timeout_ms"),
        (pb.VerifyTrafficRequest(federation_id="f", echo_port=65_536), "echo_port"),
        (pb.VerifyTrafficRequest(federation_id=""), "federation_id"),
    ):
        assert await bad_field(stub.VerifyTraffic(req)) == [field]


async def test_release_twice_and_unknown_is_fine_and_cleans_both_ends(env):
    _, connect = await _reserved(env)
    await env.stub.ConnectOverlay(connect)
    await env.stub.DeployFederatedService(_deploy())
    for fid, consumer in (("f", ""), ("fed-1", "sys-b")):
        for _ in range(2):
            await env.stub.ReleaseService(
                pb.ReleaseServiceRequest(federation_id=fid, consumer_id=consumer)
            )
    await env.stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="never-seen"))
    assert env.leftovers(keep_apps=("client",)) == {}
    app = await env.stub.GetApp(pb.GetAppRequest(name="client"))
    assert not any(i.overlay_ips for i in app.instances)
    await env.stub.DeleteApp(pb.DeleteAppRequest(name="client"))  # no longer attached
    assert env.leftovers() == {}


@pytest.mark.parametrize("method", ["ReleaseService", "GetServiceStatus"])
@pytest.mark.parametrize("fid", ["", "has space", "x" * 65, "-lead"])
async def test_federation_ids_are_checked(env, method, fid):
    request = getattr(pb, f"{method}Request")(federation_id=fid)
    assert await bad_field(getattr(env.stub, method)(request)) == ["federation_id"]


async def test_status_of_both_ends(env):
    res, connect = await _reserved(env)
    status = await env.stub.GetServiceStatus(pb.GetServiceStatusRequest(federation_id="f"))
    assert status.role == "consumer" and not status.links
    assert status.local_endpoint == res.consumer_endpoint
    con = await env.stub.ConnectOverlay(connect)
    status = await env.stub.GetServiceStatus(pb.GetServiceStatusRequest(federation_id="f"))
    assert status.local_endpoint == con.consumer_endpoint
    assert status.remote_endpoint == connect.provider_endpoint
    assert len(status.links) == 4 and len(status.instances) == 2
    assert all(i.overlay_ips for i in status.instances)
    dep = await env.stub.DeployFederatedService(_deploy())
    status = await env.stub.GetServiceStatus(
        pb.GetServiceStatusRequest(federation_id="fed-1", consumer_id="sys-b")
    )
    assert status.local_endpoint == dep.provider_endpoint
    assert status.remote_endpoint.vni == 1234
    assert status.remote_endpoint.underlay_ip == PEER_UNDERLAY


async def test_an_attached_app_can_neither_scale_nor_go(env):
    _, connect = await _reserved(env)
    await env.stub.ConnectOverlay(connect)
    for call in (
        env.stub.ScaleApp(pb.ScaleAppRequest(name="client", replicas=3)),
        env.stub.DeleteApp(pb.DeleteAppRequest(name="client")),
    ):
        code, details = await code_of(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "federation(s) f" in details
    assert len((await env.stub.GetApp(pb.GetAppRequest(name="client"))).instances) == 2
