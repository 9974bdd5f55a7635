"""Fixtures for the federation workflow's transport conformance suite.

Every scenario runs against every Mff transport (``transport_kind``). The MEF
servers are real: gRPC with mutual TLS on loopback, port 0. Only the MEO is
replaced by a recording in-memory double (FakeOrchestrator); the real MEO with
Docker and VXLAN is exercised by tests/meo and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from mecfed import security
from mecfed.config import PeerConfig, SystemConfig
from mecfed.errors import DeploymentFailed, NotFound
from mecfed.testbed.pki import Pki
from mecfed.v1 import federator_pb2_grpc
from mef import server as mef_server
from mef.domain import AppSpec, OverlayEndpoint, TrafficReport, TunnelCandidate
from mef.workflow import ConsumerSettings

TRANSPORTS = ["direct", "chain"]
# Interval mining, as on a real network (automine makes no empty blocks, so
# chain time would stand still while nobody transacts).
CHAIN_BLOCK_TIME = 0.5


@dataclass
class FakeOrchestrator:
    """Records what the workflow asked of its MEO; failures on demand."""

    system_id: str
    underlay_ip: str
    apps: set[str] = field(default_factory=lambda: {"svc"})
    fail_deploy: bool = False
    deploy_delay: float = 0.0
    lose_traffic: bool = False
    deployed: dict[str, AppSpec] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)
    reserved: set[str] = field(default_factory=set)
    released: list[str] = field(default_factory=list)

    async def require_app(self, name: str) -> None:
        if name not in self.apps:
            raise NotFound(f"app {name!r} not found")

    async def reserve_overlay(self, federation_id: str, candidates: int):
        self.reserved.add(federation_id)
        return (
            OverlayEndpoint(self.underlay_ip, "172.30.1.0/24", ("172.30.1.1",)),
            tuple(TunnelCandidate(5000 + i, 4789) for i in range(candidates)),
        )

    async def deploy_federated(self, federation_id, consumer_id, app, consumer_endpoint, cands):
        await asyncio.sleep(self.deploy_delay)
        if self.fail_deploy:
            raise DeploymentFailed("image pull failed (forced by the test)")
        self.deployed[federation_id] = app
        c = cands[0]
        return dataclasses.replace(
            consumer_endpoint,
            underlay_ip=self.underlay_ip,
            app_ips=("172.30.1.129",),
            vni=c.vni,
            udp_port=c.udp_port,
        )

    async def connect_overlay(self, federation_id, service_name, provider_endpoint):
        self.connected.add(federation_id)
        return OverlayEndpoint(
            self.underlay_ip,
            provider_endpoint.subnet,
            ("172.30.1.1",),
            provider_endpoint.vni,
            provider_endpoint.udp_port,
        )

    async def verify_traffic(self, federation_id, count, interval_ms, timeout_ms, echo_port):
        received = count // 2 if self.lose_traffic else count
        return TrafficReport(count, received, 1 - received / count, 0.2, 0.4)

    async def release(self, federation_id: str) -> None:
        self.released.append(federation_id)
        self.deployed.pop(federation_id, None)
        self.connected.discard(federation_id)
        self.reserved.discard(federation_id)


@dataclass
class Node:
    config: SystemConfig
    mef: mef_server.MefServer
    meo: FakeOrchestrator

    @property
    def system_id(self) -> str:
        return self.config.system_id

    def channel(self, as_system: SystemConfig | None = None) -> grpc.aio.Channel:
        me = as_system or self.config
        return security.secure_channel(f"127.0.0.1:{self.mef.port}", me.tls, self.system_id)

    def federator(self, channel: grpc.aio.Channel) -> federator_pb2_grpc.MecFederatorStub:
        return federator_pb2_grpc.MecFederatorStub(channel)


def fixed_policy(price: int, capacity: int = 8) -> dict:
    return {"fixed": {"price": str(price)}, "capacityReplicas": capacity}


NO_OFFERS = {"fixed": {"price": "1"}, "capacityReplicas": 0}


@pytest.fixture(params=TRANSPORTS)
def transport_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    return pki


@pytest.fixture
async def chain_env(transport_kind: str, tmp_path: Path) -> AsyncIterator[dict | None]:
    """For the chain transport: anvil, a fresh Federation contract whose
    allowlist holds the dev accounts, and one keystore per account."""
    if transport_kind != "chain":
        yield None
        return
    from mecfed.chain import federation as fedc
    from mecfed.chain.anvil import Anvil
    from mecfed.chain.client import ChainClient
    from mecfed.chain.keystore import create_keystore

    async with Anvil(block_time=CHAIN_BLOCK_TIME) as anvil:
        admin = anvil.dev_accounts[0]
        async with await ChainClient.connect(anvil.ws_url, admin) as client:
            address = await fedc.deploy(
                client, fedc.ALLOWLIST, [a.address for a in anvil.dev_accounts[1:]]
            )
        password = tmp_path / "password"
        password.write_text("conformance")
        keystores = []
        for i, account in enumerate(anvil.dev_accounts[1:]):
            path = tmp_path / f"key-{i}.json"
            create_keystore(path, password, private_key=account.key, scrypt_n=2**4)
            keystores.append(str(path))
        yield {
            "ws_url": anvil.ws_url,
            "contract": address,
            "password_file": str(password),
            "keystores": keystores,
        }


@pytest.fixture
async def federation_net(
    transport_kind: str, pki: Pki, tmp_path: Path, chain_env: dict | None
) -> AsyncIterator[Callable[..., asyncio.Future]]:
    """Factory: ``await federation_net(policies)`` starts one MEF per policy,
    all registered with each other; node 0 is the consumer."""
    started: list[Node] = []

    async def make(policies: list[dict], settings: ConsumerSettings | None = None) -> list[Node]:
        nodes: list[Node] = []
        for i, policy in enumerate(policies):
            sid = f"mec-{i:02d}"
            config = SystemConfig(
                system_id=sid,
                system_name=f"MEC system {i:02d}",
                system_provider=f"operator-{i:02d}",
                underlay_ip=f"10.213.0.{10 + i}",
                mef_listen="127.0.0.1:0",
                meo_listen="127.0.0.1:1",  # unused: the MEO is the fake below
                tls=pki.issue(sid, ips=["127.0.0.1"]),
                backend=transport_kind,
                offer_policy=policy,
                state_dir=str(tmp_path / sid),
                chain={
                    "ws_url": chain_env["ws_url"],
                    "contract": chain_env["contract"],
                    "keystore": chain_env["keystores"][i],
                    "password_file": chain_env["password_file"],
                }
                if chain_env
                else {},
            )
            (tmp_path / f"{sid}.json").write_text(json.dumps(json.loads(config.to_json())))
            meo = FakeOrchestrator(sid, config.underlay_ip)
            mef = await mef_server.start(config, settings=settings)
            # The workflows talk to the fake MEO instead of a gRPC one.
            mef.consumer.orchestrator = meo
            mef.provider.orchestrator = meo
            node = Node(config, mef, meo)
            nodes.append(node)
            started.append(node)
        for node in nodes:
            for other in nodes:
                node.mef.peers.add(PeerConfig(other.system_id, f"127.0.0.1:{other.mef.port}"))
        return nodes

    yield make  # type: ignore[misc]
    for node in started:
        await node.mef.stop(grace=0)
