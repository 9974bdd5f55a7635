"""Orphans the MEO cannot see, on real namespaces, VXLAN and containers: a
MEO killed between an intent and its record (after a container started,
after a warm-pool claim, half-way through the overlay) leaves things no
record owns; the same MEO restarted over its state directory removes them
all before it serves."""

from __future__ import annotations

import asyncio
import secrets

import grpc
import pytest
from meo_helpers import PREFIX, start_system
from test_integration import _instances_left, _overlay_links

from mecfed.v1 import common_pb2
from mecfed.v1 import orchestrator_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _pool_spares(system_id: str) -> int:
    import docker

    return len(
        docker.from_env().containers.list(
            all=True, filters={"label": [f"mecfed.system={system_id}", "mecfed.pool"]}
        )
    )


@pytest.mark.parametrize(
    ("vim", "crash_at", "pool"),
    [
        ("docker", "instance", False),  # container started, not yet recorded
        ("docker", "instance", True),  # warm-pool container claimed, not yet recorded
        ("netns", "instance", False),
        ("netns", "vxlan", False),  # half-made overlay: bridge and VXLAN, no veths
        ("docker", "veth0", False),  # one veth moved into a container
    ],
)
async def test_a_restart_removes_what_a_killed_meo_left(
    underlay, tmp_path, request, vim, crash_at, pool
):
    if vim == "docker":
        request.getfixturevalue("echo_image")
    _, host = underlay
    sid = f"{PREFIX}k{secrets.token_hex(2)}"
    extra = {"warm_pool": 1, "warm_image": "mecfed/echo:1"} if pool else {}
    deploy = pb.DeployFederatedServiceRequest(
        federation_id="fed-1",
        consumer_id="sys-c",
        app=common_pb2.AppSpec(image="mecfed/echo:1", replicas=2),
        consumer_endpoint=common_pb2.OverlayEndpoint(
            underlay_ip="10.217.99.9", subnet="172.30.5.0/24"
        ),
        candidates=[common_pb2.TunnelCandidate(vni=4321, udp_port=4800)],
    )
    async with start_system(host, vim, tmp_path, sid, crash_at=crash_at, sweep=False, **extra) as s:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.DeployFederatedService(deploy)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await asyncio.to_thread(s.proc.wait, 20) == 137
    left = _instances_left(sid, vim)
    assert left >= 1 or _overlay_links(host.netns), "the crash left nothing to find"

    async with start_system(host, vim, tmp_path, sid, **extra) as again:
        assert _overlay_links(host.netns) == set()
        assert _instances_left(sid, vim) == (1 if pool else 0)  # only a fresh or adopted spare
        if pool:
            assert _pool_spares(sid) == 1
        assert (await again.stub.ListServices(pb.ListServicesRequest())).services == []
        assert (await again.stub.ListApps(pb.ListAppsRequest())).apps == []
        # And the federation deploys afresh on the same tunnel.
        dep = await again.stub.DeployFederatedService(deploy)
        assert dep.provider_endpoint.vni == 4321 and len(dep.instances) == 2
