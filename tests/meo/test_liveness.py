"""Runtime liveness on a real overlay (two emulated hosts, netns VIM): the
consumer's WatchTraffic stream, read through the MEF's own client, reports
loss while the provider's VXLAN link is down and full traffic again once it
is back, each series timestamped by the MEO; releasing the federation ends
the stream. ListServices of both MEOs, through the same client, names the
federation with its role and consumer."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from meo_helpers import PREFIX, start_system
from pyroute2 import IPRoute
from test_integration import _federate, _spec

from mecfed.model import Role, TrafficCheck, TrafficReport
from mecfed.v1 import orchestrator_pb2 as pb
from mef.meo_client import GrpcOrchestrator
from meo.nsutil import run_in_netns

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHECK = TrafficCheck(count=3, interval_ms=10, timeout_ms=100)


def _set_vxlan(netns_path: str, state: str) -> None:
    def flip() -> None:
        with IPRoute() as ipr:
            for link in ipr.get_links():
                if link.get_attr("IFLA_IFNAME").startswith("mfx"):
                    ipr.link("set", index=link["index"], state=state)

    run_in_netns(netns_path, flip)


async def _until(stream, want, limit: int = 20) -> TrafficReport:
    for _ in range(limit):
        report = await asyncio.wait_for(anext(stream), 30)
        assert report.measured_at > 0
        if want(report):
            return report
    raise AssertionError("the watch never reported what was expected")


async def test_watch_traffic_sees_the_link_go_down_and_come_back(underlay, tmp_path):
    host_a, host_b = underlay
    tag = secrets.token_hex(2)
    async with (
        start_system(host_a, "netns", tmp_path, f"{PREFIX}c{tag}") as consumer,
        start_system(host_b, "netns", tmp_path, f"{PREFIX}p{tag}") as provider,
    ):
        await consumer.stub.CreateApp(pb.CreateAppRequest(name="client", spec=_spec()))
        fed = f"fed-{tag}"
        await _federate(consumer, provider, fed, replicas=1)
        mine, theirs = GrpcOrchestrator(consumer.channel), GrpcOrchestrator(provider.channel)
        (c,) = await mine.list_services()
        assert (c.federation_id, c.role, c.consumer_id) == (fed, Role.CONSUMER, "")
        (p,) = await theirs.list_services()
        assert (p.federation_id, p.role, p.consumer_id) == (
            fed,
            Role.PROVIDER,
            consumer.config.system_id,
        )
        assert len(p.links) == 3  # bridge, VXLAN, one veth

        stream = mine.watch_traffic(fed, CHECK, 100)
        first = await _until(stream, lambda r: r.ok)
        _set_vxlan(host_b.path, "down")
        lost = await _until(stream, lambda r: r.loss > 0)
        assert lost.measured_at > first.measured_at
        _set_vxlan(host_b.path, "up")
        back = await _until(stream, lambda r: r.ok)
        assert back.measured_at > lost.measured_at and (back.sent, back.received) == (3, 3)

        await mine.release(fed)
        with pytest.raises(StopAsyncIteration):
            for _ in range(5):
                await asyncio.wait_for(anext(stream), 30)
        await theirs.release(fed, consumer.config.system_id)
        assert await mine.list_services() == [] and await theirs.list_services() == []
