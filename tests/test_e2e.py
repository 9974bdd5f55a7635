"""End to end on the real thing: a testbed of MEC systems in network
namespaces, real MEF and MEO processes, mutual TLS, Docker containers and a
VXLAN overlay. Needs root and a Docker engine."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import docker
import grpc
import pytest
import pytest_asyncio
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mecfed.config import SystemConfig, TlsPaths
from mecfed.rpc import security
from mecfed.testbed import Testbed, supervisor
from mecfed.testbed import netns as tb_netns
from mecfed.testbed.pki import Pki
from mecfed.v1 import common_pb2, federator_pb2, federator_pb2_grpc, peer_pb2, peer_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as meo_pb
from mecfed.v1 import orchestrator_pb2_grpc as meo_grpc
from meo.image import build_image

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, Docker)"),
]

IMAGE = "mecfed/echo:1"


def leftovers(name: str) -> dict[str, list]:
    client = docker.from_env()
    containers = client.containers.list(all=True, filters={"label": f"mecfed.testbed={name}"})
    found = {
        "namespaces": tb_netns.testbed_namespaces(name),
        "links": tb_netns.testbed_links(name),
        "containers": [c.name for c in containers],
    }
    processes = supervisor.find_tagged(name)  # MEFs, MEOs and the chain node
    if processes:
        found["processes"] = processes
    # The netns VIM names its namespaces after the MEC system, not the testbed.
    netns_dir = "/var/run/netns"
    names = os.listdir(netns_dir) if os.path.isdir(netns_dir) else []
    vim_namespaces = [n for n in names if n.startswith("mecfed-mec-")]
    if vim_namespaces:
        found["vim_namespaces"] = vim_namespaces
    return found


def run_demo(*args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "mecfed.cli", "demo", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr[-3000:]}"
    return proc.returncode, json.loads(lines[-1])


@pytest.mark.parametrize(
    ("backend", "vim"), [("direct", "docker"), ("direct", "netns"), ("chain", "docker")]
)
def test_demo_federates_with_zero_loss_and_leaves_nothing(backend: str, vim: str) -> None:
    name = f"mfd{backend[0]}{vim[0]}"
    rc, result = run_demo(
        "--backend",
        backend,
        "--systems",
        "2",
        "--vim",
        vim,
        "--block-time",
        "1",
        "--testbed",
        name,
        "--subnet",
        "10.217.0.0/16",
    )
    assert rc == 0, result
    assert result["ok"] is True
    assert result["backend"] == backend and result["systems"] == 2
    (fed,) = result["federations"]
    assert fed["consumer"] == "mec-01" and fed["provider"] == "mec-02"
    assert fed["traffic"] == {**fed["traffic"], "sent": 20, "received": 20, "loss": 0.0}
    assert fed["traffic"]["rtt_ms"] > 0
    assert list(fed["steps"]) == [
        "offer_collection",
        "award",
        "deployment",
        "overlay",
        "traffic_check",
    ]
    assert 0 < fed["seconds"] < 30
    assert leftovers(name) == {"namespaces": [], "links": [], "containers": []}


@dataclass
class Bed:
    consumer: SystemConfig
    provider: SystemConfig
    stranger: TlsPaths  # same CA, not a registered peer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bed() -> AsyncIterator[Bed]:
    build_image(IMAGE)
    testbed = Testbed(name="mfe", subnet="10.210.0.0/16", base_port=51051)
    try:
        state = await testbed.up(2)
        consumer, provider = (SystemConfig.load(s.config_path) for s in state.systems)
        stranger = Pki(testbed.state_dir / "pki").issue("mec-99", ["127.0.0.1"])
        yield Bed(consumer, provider, stranger)
    finally:
        await testbed.down()
    assert await asyncio.to_thread(leftovers, "mfe") == {
        "namespaces": [],
        "links": [],
        "containers": [],
    }


def federator(config: SystemConfig, tls: TlsPaths | None = None):
    channel = security.secure_channel(config.mef_listen, tls or config.tls, config.system_id)
    return channel, federator_pb2_grpc.MecFederatorStub(channel)


async def expect_status(call, code: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    for fragment in fragments:
        assert fragment in err.value.details()
    return err.value.details()


@pytest.mark.asyncio(loop_scope="module")
async def test_reflection_and_health_answer(bed: Bed) -> None:
    channel, _ = federator(bed.consumer)
    async with channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in responses for s in r.list_services_response.service}
    assert {"mecfed.v1.MecFederator", "mecfed.v1.FederationPeer", "grpc.health.v1.Health"} <= (
        names
    )


@pytest.mark.asyncio(loop_scope="module")
async def test_other_systems_may_not_use_mfm_or_the_meo(bed: Bed) -> None:
    # The provider's certificate is valid, but Mfm belongs to the consumer's MEO.
    channel, stub = federator(bed.consumer, bed.provider.tls)
    async with channel:
        await expect_status(
            stub.ListFederations(federator_pb2.ListFederationsRequest(), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED,
            "mec-02 may not call",
        )
    meo_channel = security.secure_channel(
        bed.consumer.meo_listen, bed.provider.tls, bed.consumer.system_id
    )
    async with meo_channel:
        await expect_status(
            meo_grpc.MecOrchestratorStub(meo_channel).ListApps(
                meo_pb.ListAppsRequest(), timeout=10
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )


@pytest.mark.asyncio(loop_scope="module")
async def test_unregistered_peer_is_refused_on_mff(bed: Bed) -> None:
    channel = security.secure_channel(bed.provider.mef_listen, bed.stranger, bed.provider.system_id)
    async with channel:
        await expect_status(
            peer_pb2_grpc.FederationPeerStub(channel).RequestOffer(
                peer_pb2.RequestOfferRequest(
                    federation_id="fed-x",
                    app=common_pb2.AppSpec(image=IMAGE, replicas=1),
                    max_price=10**9,
                ),
                timeout=10,
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "mec-99",
        )


@pytest.mark.asyncio(loop_scope="module")
async def test_bad_requests_get_clear_errors(bed: Bed) -> None:
    def req(**changes) -> federator_pb2.RequestFederationRequest:
        base = {
            "service_name": "svc-mec-01",
            "app": common_pb2.AppSpec(image=IMAGE, replicas=1),
            "requirements": common_pb2.Requirements(max_price=10**9),
        }
        base.update(changes)
        return federator_pb2.RequestFederationRequest(**base)

    channel, stub = federator(bed.consumer)
    async with channel:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        await expect_status(stub.RequestFederation(req(service_name="")), invalid, "service_name")
        await expect_status(
            stub.RequestFederation(req(service_name="x" * 300)), invalid, "service_name"
        )
        await expect_status(
            stub.RequestFederation(req(app=common_pb2.AppSpec(image=IMAGE, replicas=99))),
            invalid,
            "app.replicas",
        )
        await expect_status(
            stub.RequestFederation(req(app=common_pb2.AppSpec(image="", replicas=1))),
            invalid,
            "app.image",
        )
        await expect_status(
            stub.RequestFederation(req(requirements=common_pb2.Requirements(max_price=0))),
            invalid,
            "max_price",
        )
        await expect_status(
            stub.RequestFederation(req(requirements=common_pb2.Requirements(max_price=10**18))),
            invalid,
            "absurd",
        )
        await expect_status(
            stub.RequestFederation(req(service_name="no-such-app")),
            grpc.StatusCode.NOT_FOUND,
            "no-such-app",
        )
        await expect_status(
            stub.GetFederation(federator_pb2.GetFederationRequest(federation_id="fed-nope")),
            grpc.StatusCode.NOT_FOUND,
        )
        await expect_status(
            stub.GetFederation(federator_pb2.GetFederationRequest(federation_id="")),
            invalid,
            "federation_id is required",
        )


@pytest.mark.asyncio(loop_scope="module")
async def test_federate_then_terminate_releases_both_sides(bed: Bed) -> None:
    meo_channel = security.secure_channel(
        bed.consumer.meo_listen, bed.consumer.tls, bed.consumer.system_id
    )
    async with meo_channel:
        meo = meo_grpc.MecOrchestratorStub(meo_channel)
        await meo.CreateApp(
            meo_pb.CreateAppRequest(
                name="svc-e2e", spec=common_pb2.AppSpec(image=IMAGE, replicas=1)
            ),
            timeout=60,
        )
    channel, stub = federator(bed.consumer)
    async with channel:
        fed = await stub.RequestFederation(
            federator_pb2.RequestFederationRequest(
                service_name="svc-e2e",
                app=common_pb2.AppSpec(image=IMAGE, replicas=2),
                requirements=common_pb2.Requirements(max_price=10**9),
            ),
            timeout=30,
        )
        updates = [
            f.state
            async for f in stub.WatchFederation(
                federator_pb2.WatchFederationRequest(federation_id=fed.federation_id),
                timeout=120,
            )
        ]
        assert updates[-1] == common_pb2.FEDERATION_STATE_ESTABLISHED
        assert common_pb2.FEDERATION_STATE_COLLECTING_OFFERS in updates
        done = await stub.GetFederation(
            federator_pb2.GetFederationRequest(federation_id=fed.federation_id)
        )
        # Two provider replicas, 20 echoes to each.
        assert done.traffic.sent == 40 and done.traffic.received == 40
        assert len(done.provider_endpoint.app_ips) == 2
        # The provider MEO's record names the containers (warm-pool claims
        # carry the federation label only in the MEO's own state).
        p_ch = security.secure_channel(
            bed.provider.meo_listen, bed.provider.tls, bed.provider.system_id
        )
        async with p_ch:
            status = await meo_grpc.MecOrchestratorStub(p_ch).GetServiceStatus(
                meo_pb.GetServiceStatusRequest(
                    federation_id=fed.federation_id, consumer_id=bed.consumer.system_id
                ),
                timeout=10,
            )
        ids = [i.instance_id for i in status.instances]
        client = docker.from_env()
        assert len(ids) == 2
        assert all(client.containers.get(i).status == "running" for i in ids)
        await stub.TerminateFederation(
            federator_pb2.TerminateFederationRequest(federation_id=fed.federation_id),
            timeout=60,
        )
        for i in ids:
            with pytest.raises(docker.errors.NotFound):
                client.containers.get(i)
    # Neither MEO holds anything of the federation any more (links included:
    # the MEO tests check the netlink side of release).
    for side in (bed.consumer, bed.provider):
        ch = security.secure_channel(side.meo_listen, side.tls, side.system_id)
        async with ch:
            await expect_status(
                meo_grpc.MecOrchestratorStub(ch).GetServiceStatus(
                    meo_pb.GetServiceStatusRequest(
                        federation_id=fed.federation_id,
                        consumer_id="" if side is bed.consumer else bed.consumer.system_id,
                    ),
                    timeout=10,
                ),
                grpc.StatusCode.NOT_FOUND,
            )
