"""Federations as the MEF sees them through a real server (fake VIM and
host networking, no root): keyed by (consumer, id) at the provider,
listed for a restarted federator (ListServices), watched at runtime
(WatchTraffic), and released whatever the timing: a release that arrives
while the same federation is being deployed or connected wins, and a VIM
call cut short by a cancellation leaves nothing behind. Part of it through
the MEF's own client (mef.meo_client.GrpcOrchestrator)."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from meo_fakes import bad_field, code_of, deploy_request, reserved

from mecfed.errors import NotFound
from mecfed.model import Role, TrafficCheck
from mecfed.v1 import orchestrator_pb2 as pb
from mef.meo_client import GrpcOrchestrator
from meo.network import LinkNames, first_tag

FAST = TrafficCheck(count=2, interval_ms=0, timeout_ms=10)


async def _eventually(check, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


# --- provider federations keyed by (consumer, id) ---------------------------------


async def test_two_consumers_with_the_same_federation_id_coexist_and_release_apart(env):
    a = await env.stub.DeployFederatedService(deploy_request(consumer_id="sys-b"))
    b = await env.stub.DeployFederatedService(
        deploy_request(
            consumer_id="sys-c",
            candidates=[pb.DeployFederatedServiceRequest().candidates.add(vni=1235, udp_port=4791)],
        )
    )
    assert a.provider_endpoint.vni != b.provider_endpoint.vni
    assert len(env.vim.instances) == 4 and set(env.net.links) == {"sys-b/fed-1", "sys-c/fed-1"}
    apps = (await env.stub.ListApps(pb.ListAppsRequest())).apps
    assert [x.federation_id for x in apps] == ["fed-1", "fed-1"]
    # One consumer's second deploy of its id is refused; the other's is not involved.
    code, _ = await code_of(env.stub.DeployFederatedService(deploy_request(consumer_id="sys-c")))
    assert code == grpc.StatusCode.ALREADY_EXISTS

    await env.stub.ReleaseService(
        pb.ReleaseServiceRequest(federation_id="fed-1", consumer_id="sys-b")
    )
    status = await env.stub.GetServiceStatus(
        pb.GetServiceStatusRequest(federation_id="fed-1", consumer_id="sys-c")
    )
    assert status.consumer_id == "sys-c" and len(status.instances) == 2 and len(status.links) == 4
    assert [i.instance_id for i in status.instances] == [i.instance_id for i in b.instances]
    assert set(env.net.links) == {"sys-c/fed-1"} and len(env.vim.instances) == 2
    code, _ = await code_of(
        env.stub.GetServiceStatus(
            pb.GetServiceStatusRequest(federation_id="fed-1", consumer_id="sys-b")
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    await env.stub.ReleaseService(
        pb.ReleaseServiceRequest(federation_id="fed-1", consumer_id="sys-c")
    )
    assert env.leftovers() == {}


@pytest.mark.parametrize("method", ["ReleaseService", "GetServiceStatus"])
@pytest.mark.parametrize("consumer", ["has space", "x" * 65, "a/b"])
async def test_consumer_ids_are_checked(env, method, consumer):
    request = getattr(pb, f"{method}Request")(federation_id="fed-1", consumer_id=consumer)
    assert await bad_field(getattr(env.stub, method)(request)) == ["consumer_id"]


# --- ListServices -------------------------------------------------------------------


async def test_list_services_names_both_roles_and_whose(env):
    orch = GrpcOrchestrator(env.channel)
    assert await orch.list_services() == []
    _, connect = await reserved(env)
    await env.stub.ConnectOverlay(connect)
    await reserved(env, "g", app=None)  # reserved, never connected: it holds a subnet
    await env.stub.DeployFederatedService(deploy_request())
    found = {
        (s.federation_id, s.role, s.consumer_id): len(s.links) for s in await orch.list_services()
    }
    assert found == {
        ("f", Role.CONSUMER, ""): 4,
        ("g", Role.CONSUMER, ""): 0,
        ("fed-1", Role.PROVIDER, "sys-b"): 4,
    }
    await orch.release("fed-1", "sys-b")
    await orch.release("f")
    await orch.release("g")
    assert await orch.list_services() == []


async def test_a_deployment_under_way_is_listed(env):
    env.vim.gate = asyncio.Event()
    deploy = asyncio.ensure_future(env.stub.DeployFederatedService(deploy_request()))
    await asyncio.wait_for(env.vim.entered.wait(), 5)
    (listed,) = (await env.stub.ListServices(pb.ListServicesRequest())).services
    assert (listed.federation_id, listed.role, listed.consumer_id) == ("fed-1", "provider", "sys-b")
    env.vim.gate.set()
    await deploy


# --- a release wins over a deployment under way ---------------------------------


async def test_a_release_during_the_containers_wins(env):
    env.vim.gate = asyncio.Event()
    deploy = asyncio.ensure_future(env.stub.DeployFederatedService(deploy_request()))
    await asyncio.wait_for(env.vim.entered.wait(), 5)
    release = asyncio.ensure_future(GrpcOrchestrator(env.channel).release("fed-1", "sys-b"))
    await asyncio.sleep(0.05)
    assert not release.done()  # the VIM call under way is waited out, then undone
    env.vim.gate.set()
    await release
    code, details = await code_of(deploy)
    assert code == grpc.StatusCode.ABORTED and "released while it was being set up" in details
    assert env.leftovers() == {}
    # The same federation deploys again afterwards: nothing of it was kept.
    assert (await env.stub.DeployFederatedService(deploy_request())).provider_endpoint.vni == 1234


async def test_a_release_during_the_overlay_waits_for_its_thread_and_wins(env):
    env.net.hold = threading.Event()
    deploy = asyncio.ensure_future(env.stub.DeployFederatedService(deploy_request()))
    await asyncio.to_thread(env.net.entered.wait, 5)
    release = asyncio.ensure_future(
        env.stub.ReleaseService(
            pb.ReleaseServiceRequest(federation_id="fed-1", consumer_id="sys-b")
        )
    )
    await asyncio.sleep(0.1)
    assert not release.done()  # the set-up thread still runs: its links would survive a release now
    env.net.hold.set()
    await release
    code, _ = await code_of(deploy)
    assert code == grpc.StatusCode.ABORTED
    assert env.leftovers() == {}


async def test_a_release_during_a_connect_wins(env):
    _, connect = await reserved(env)
    env.net.hold = threading.Event()
    call = asyncio.ensure_future(env.stub.ConnectOverlay(connect))
    await asyncio.to_thread(env.net.entered.wait, 5)
    release = asyncio.ensure_future(
        env.stub.ReleaseService(pb.ReleaseServiceRequest(federation_id="f"))
    )
    await asyncio.sleep(0.05)
    env.net.hold.set()
    await release
    code, _ = await code_of(call)
    assert code == grpc.StatusCode.ABORTED
    assert env.leftovers(keep_apps=("client",)) == {}
    app = await env.stub.GetApp(pb.GetAppRequest(name="client"))
    assert not any(i.overlay_ips for i in app.instances)


async def test_a_container_started_after_its_request_was_cancelled_is_removed(env):
    """The caller gives up (deadline) while the VIM's worker thread is still
    starting a container; the thread finishes later and the container goes."""
    env.vim.thread_s = 0.4
    code, _ = await code_of(env.stub.DeployFederatedService(deploy_request(), timeout=0.1))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    await _eventually(lambda: env.vim.creates == 1 and env.leftovers() == {})
    await asyncio.sleep(0.5)  # the thread is done by now: still nothing
    assert env.leftovers() == {} and env.vim.instances == {}


# --- WatchTraffic -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"federation_id": ""}, "federation_id"),
        ({"federation_id": "a b"}, "federation_id"),
        ({"period_ms": 99}, "period_ms"),
        ({"period_ms": 3_600_001}, "period_ms"),
        ({"count": 1001}, "count"),
        ({"interval_ms": 1001}, "interval_ms"),
        ({"timeout_ms": 10_001}, "timeout_ms"),
        ({"echo_port": 65_536}, "echo_port"),
    ],
)
async def test_watch_traffic_refuses_bad_fields(env, change, field):
    request = pb.WatchTrafficRequest(**{"federation_id": "f", **change})
    assert await bad_field(env.stub.WatchTraffic(request).read()) == [field]


async def test_watch_traffic_needs_a_connected_consumer_end(env):
    orch = GrpcOrchestrator(env.channel)
    with pytest.raises(NotFound):
        await anext(orch.watch_traffic("nope", FAST, 100))
    await reserved(env)
    with pytest.raises(NotFound):  # reserved, not connected
        await anext(orch.watch_traffic("f", FAST, 100))
    await env.stub.DeployFederatedService(deploy_request())
    with pytest.raises(NotFound):  # a provider end is not watched here
        await anext(orch.watch_traffic("fed-1", FAST, 100))


async def test_watch_traffic_reports_every_period_and_ends_at_release(env):
    """No real overlay here: the fake instance has no namespace, so every
    series is total loss, timestamped; the stream ends when released."""
    _, connect = await reserved(env)
    await env.stub.ConnectOverlay(connect)
    orch = GrpcOrchestrator(env.channel)
    stream = orch.watch_traffic("f", FAST, 100)
    first, second = await anext(stream), await anext(stream)
    assert (first.sent, first.received) == (2, 0) and first.loss == 1.0
    assert 0 < first.measured_at < second.measured_at
    await orch.release("f")
    with pytest.raises(StopAsyncIteration):
        while True:
            await asyncio.wait_for(anext(stream), 5)


async def test_a_link_tag_in_use_on_the_host_is_drawn_again(env):
    """Link names are short (15 characters): when the first tag of a
    federation's key is taken on the host (by anyone), another is drawn, and
    the record keeps the one it got."""
    taken = LinkNames(env.orch.installation, first_tag("sys-b/fed-1"), "someone-else")
    env.net.links["someone-else"] = [taken.bridge]
    await env.stub.DeployFederatedService(deploy_request())
    status = await env.stub.GetServiceStatus(
        pb.GetServiceStatusRequest(federation_id="fed-1", consumer_id="sys-b")
    )
    assert taken.bridge not in status.links and len(status.links) == 4
    assert all(name[3:7] == taken.h[:4] and len(name) <= 15 for name in status.links)
    await env.stub.ReleaseService(
        pb.ReleaseServiceRequest(federation_id="fed-1", consumer_id="sys-b")
    )
    assert env.net.links == {"someone-else": [taken.bridge]}
