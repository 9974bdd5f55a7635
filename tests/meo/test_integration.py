"""End to end on real namespaces, VXLAN and (for the docker VIM) containers:
two emulated MEC system hosts, one MEO each, a consumer app talking to a
provider app across the overlay."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

import grpc
import pytest
from meo_helpers import PREFIX, start_system
from pyroute2 import IPRoute, netns

from mecfed.v1 import common_pb2
from mecfed.v1 import orchestrator_pb2 as pb
from meo.nsutil import run_in_netns

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _links(ns: str) -> set[str]:
    def names() -> set[str]:
        with IPRoute() as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}

    return run_in_netns(f"/var/run/netns/{ns}", names)


def _overlay_links(ns: str) -> set[str]:
    return {n for n in _links(ns) if n.startswith(("mfb", "mfx", "mfv", "mft"))}


def _docker_count(system_id: str) -> int:
    import docker

    return len(
        docker.from_env().containers.list(all=True, filters={"label": f"mecfed.system={system_id}"})
    )


def _instances_left(system_id: str, vim: str) -> int:
    if vim == "docker":
        return _docker_count(system_id)
    return sum(1 for n in netns.listnetns() if n.startswith(f"mecfed-{system_id}-"))


@pytest.fixture(params=["docker", "netns"])
def vim(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("echo_image")
    return request.param


def _spec(image: str = "mecfed/echo:1", replicas: int = 1) -> common_pb2.AppSpec:
    return common_pb2.AppSpec(image=image, replicas=replicas)


async def _federate(consumer, provider, fed_id: str, *, replicas: int = 2, app: str = "client"):
    """The MEF's part of the workflow, done by hand."""
    res = await consumer.stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id=fed_id))
    dep = await provider.stub.DeployFederatedService(
        pb.DeployFederatedServiceRequest(
            federation_id=fed_id,
            consumer_id=consumer.config.system_id,
            app=_spec(replicas=replicas),
            consumer_endpoint=res.consumer_endpoint,
            candidates=res.candidates,
        )
    )
    con = await consumer.stub.ConnectOverlay(
        pb.ConnectOverlayRequest(
            federation_id=fed_id, service_name=app, provider_endpoint=dep.provider_endpoint
        )
    )
    return res, dep, con


async def test_federation_end_to_end(underlay, vim, tmp_path):
    host_a, host_b = underlay
    tag = secrets.token_hex(2)
    async with (
        start_system(host_a, vim, tmp_path, f"{PREFIX}c{tag}") as consumer,
        start_system(host_b, vim, tmp_path, f"{PREFIX}p{tag}") as provider,
    ):
        await consumer.stub.CreateApp(pb.CreateAppRequest(name="client", spec=_spec()))
        fed = f"fed-{tag}"
        res, dep, con = await _federate(consumer, provider, fed)

        assert len(res.candidates) == 4
        chosen = dep.provider_endpoint
        assert (chosen.vni, chosen.udp_port) == (res.candidates[0].vni, res.candidates[0].udp_port)
        subnet = res.consumer_endpoint.subnet
        base = subnet.rsplit(".", 1)[0]
        assert list(chosen.app_ips) == [f"{base}.129", f"{base}.130"]
        assert list(con.consumer_endpoint.app_ips) == [f"{base}.1"]

        report = await consumer.stub.VerifyTraffic(pb.VerifyTrafficRequest(federation_id=fed))
        assert (report.sent, report.received, report.loss) == (40, 40, 0.0)
        assert 0 < report.rtt_ms <= report.rtt_max_ms < 500

        status = await provider.stub.GetServiceStatus(
            pb.GetServiceStatusRequest(federation_id=fed, consumer_id=consumer.config.system_id)
        )
        assert status.role == "provider" and len(status.instances) == 2
        assert status.consumer_id == consumer.config.system_id
        assert len(status.links) == 4  # bridge, vxlan, 2 veths
        apps = await provider.stub.ListApps(pb.ListAppsRequest())
        assert [a.federation_id for a in apps.apps] == [fed]

        for system, host, whose in (
            (consumer, host_a, ""),
            (provider, host_b, consumer.config.system_id),
        ):
            key = {"federation_id": fed, "consumer_id": whose}
            await system.stub.ReleaseService(pb.ReleaseServiceRequest(**key))
            await system.stub.ReleaseService(pb.ReleaseServiceRequest(**key))
            assert _overlay_links(host.netns) == set()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await system.stub.GetServiceStatus(pb.GetServiceStatusRequest(**key))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert _instances_left(provider.config.system_id, vim) == 0
        # The consumer's own app survives the federation, without overlay IPs.
        app = await consumer.stub.GetApp(pb.GetAppRequest(name="client"))
        assert len(app.instances) == 1 and not app.instances[0].overlay_ips
        await consumer.stub.DeleteApp(pb.DeleteAppRequest(name="client"))
        assert _instances_left(consumer.config.system_id, vim) == 0


async def test_failure_half_way_leaves_nothing(underlay, vim, tmp_path):
    host_a, host_b = underlay
    tag = secrets.token_hex(2)
    async with (
        start_system(host_a, vim, tmp_path, f"{PREFIX}c{tag}") as consumer,
        start_system(host_b, vim, tmp_path, f"{PREFIX}p{tag}", fail_once="veth1") as provider,
    ):
        res = await consumer.stub.ReserveOverlay(
            pb.ReserveOverlayRequest(federation_id="f1", candidates=2)
        )

        def deploy(image: str = "mecfed/echo:1"):
            return provider.stub.DeployFederatedService(
                pb.DeployFederatedServiceRequest(
                    federation_id="f1",
                    consumer_id="c",
                    app=_spec(image, replicas=2),
                    consumer_endpoint=res.consumer_endpoint,
                    candidates=res.candidates,
                )
            )

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await deploy()
        # DeploymentFailed is an Aborted (rolled back, may succeed elsewhere).
        assert err.value.code() == grpc.StatusCode.ABORTED
        assert "injected failure" in err.value.details()
        assert _overlay_links(host_b.netns) == set()
        assert _instances_left(provider.config.system_id, vim) == 0
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await provider.stub.GetServiceStatus(
                pb.GetServiceStatusRequest(federation_id="f1", consumer_id="c")
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        if vim == "docker":  # the VIM itself fails on the second replica's image
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await deploy("mecfed/does-not-exist:0")
            # Images are built locally: a missing one is the host's state.
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "not found" in err.value.details()
            assert _instances_left(provider.config.system_id, vim) == 0
            assert _overlay_links(host_b.netns) == set()

        # And afterwards the same federation deploys fine, on the first
        # candidate again: the failed attempts released their reservation.
        dep = await deploy()
        assert len(dep.instances) == 2
        assert dep.provider_endpoint.vni == res.candidates[0].vni


async def test_one_consumer_federates_twice(underlay, tmp_path):
    """Concurrent federations of one consumer get distinct VNIs, ports and subnets,
    and a VNI already used by a foreign VXLAN link on the provider is skipped."""
    host_a, host_b = underlay
    tag = secrets.token_hex(2)
    async with (
        start_system(host_a, "netns", tmp_path, f"{PREFIX}c{tag}") as consumer,
        start_system(host_b, "netns", tmp_path, f"{PREFIX}p{tag}") as provider,
    ):
        await consumer.stub.CreateApp(pb.CreateAppRequest(name="client", spec=_spec()))
        import asyncio

        r1, r2 = await asyncio.gather(
            consumer.stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="a", candidates=3)),
            consumer.stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="b", candidates=3)),
        )
        vnis = [c.vni for c in (*r1.candidates, *r2.candidates)]
        ports = [c.udp_port for c in (*r1.candidates, *r2.candidates)]
        assert len(set(vnis)) == 6 and len(set(ports)) == 6
        assert r1.consumer_endpoint.subnet != r2.consumer_endpoint.subnet

        # A foreign VXLAN on the provider host occupies federation a's first VNI.
        first = r1.candidates[0]

        def foreign() -> None:
            with IPRoute() as ipr:
                ipr.link(
                    "add",
                    ifname="foreign0",
                    kind="vxlan",
                    vxlan_id=first.vni,
                    vxlan_port=first.udp_port,
                )

        run_in_netns(host_b.path, foreign)
        _, dep1, _ = await _federate_reserved(consumer, provider, "a", r1)
        assert (dep1.provider_endpoint.vni, dep1.provider_endpoint.udp_port) == (
            r1.candidates[1].vni,
            r1.candidates[1].udp_port,
        )
        _, dep2, _ = await _federate_reserved(consumer, provider, "b", r2)
        for fed in ("a", "b"):
            rep = await consumer.stub.VerifyTraffic(
                pb.VerifyTrafficRequest(federation_id=fed, count=20, interval_ms=1)
            )
            assert (rep.sent, rep.received) == (20, 20)
        # Later reservations avoid what is now in use on the consumer host.
        r3 = await consumer.stub.ReserveOverlay(pb.ReserveOverlayRequest(federation_id="c"))
        used = {dep1.provider_endpoint.vni, dep2.provider_endpoint.vni}
        assert not used & {c.vni for c in r3.candidates}


async def _federate_reserved(consumer, provider, fed_id, res):
    dep = await provider.stub.DeployFederatedService(
        pb.DeployFederatedServiceRequest(
            federation_id=fed_id,
            consumer_id=consumer.config.system_id,
            app=_spec(replicas=1),
            consumer_endpoint=res.consumer_endpoint,
            candidates=res.candidates,
        )
    )
    con = await consumer.stub.ConnectOverlay(
        pb.ConnectOverlayRequest(
            federation_id=fed_id, service_name="client", provider_endpoint=dep.provider_endpoint
        )
    )
    return res, dep, con


async def test_cleanup_after_crash(underlay, vim, tmp_path):
    """A MEO killed with SIGKILL mid-federation leaves containers and links;
    a cleanup run (``python -m meo --cleanup`` equivalent) removes them all."""
    host_a, host_b = underlay
    tag = secrets.token_hex(2)
    async with (
        start_system(host_a, vim, tmp_path, f"{PREFIX}c{tag}") as consumer,
        start_system(host_b, vim, tmp_path, f"{PREFIX}p{tag}") as provider,
    ):
        await consumer.stub.CreateApp(pb.CreateAppRequest(name="client", spec=_spec()))
        await _federate(consumer, provider, "crash", replicas=2)
        for system in (consumer, provider):
            system.proc.kill()
            await asyncio.to_thread(system.proc.wait)
        assert _overlay_links(host_b.netns) and _overlay_links(host_a.netns)
        assert _instances_left(provider.config.system_id, vim) == 2
        for system in (consumer, provider):
            cfg = tmp_path / f"{system.config.system_id}.json"
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).with_name("meo_host.py")),
                "--netns",
                system.host.path,
                "--config",
                str(cfg),
                "--socket",
                "unused",
                "--cleanup",
            )
            assert await proc.wait() == 0
            assert _overlay_links(system.host.netns) == set()
            assert _instances_left(system.config.system_id, vim) == 0


def test_image_build_is_idempotent(echo_image):
    import docker

    from meo.image import HASH_LABEL, build_image

    first = build_image(echo_image)
    assert build_image(echo_image) == first
    image = docker.from_env().images.get(echo_image)
    assert image.labels[HASH_LABEL]
    assert image.attrs["Config"]["Cmd"] == ["/echo"]
