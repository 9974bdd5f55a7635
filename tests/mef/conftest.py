"""Fixtures for the federation workflow's transport conformance suite.

Every scenario runs against every Mff transport (``transport_kind``). The MEF
servers are real: gRPC with mutual TLS on loopback, port 0, and on the chain
a real anvil with the committed contract. Only the MEO is replaced by a
recording in-memory double (tests.mef.fakes.FakeOrchestrator); the real MEO
with Docker and VXLAN is exercised by tests/meo and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from mecfed.config import PeerConfig, SystemConfig
from mecfed.rpc.security import secure_channel
from mecfed.testbed.pki import Pki
from mecfed.v1 import federator_pb2_grpc
from mef import server as mef_server
from mef.workflow import ConsumerSettings
from tests.mef.fakes import FakeOrchestrator

TRANSPORTS = ["direct", "chain"]
# Interval mining, as on a real network (automine makes no empty blocks, so
# chain time would stand still while nobody transacts).
CHAIN_BLOCK_TIME = 0.5


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
        return secure_channel(f"127.0.0.1:{self.mef.port}", me.tls, self.system_id)

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
    from mecfed.chain.anvil import Anvil
    from mecfed.chain.client import ChainClient
    from mecfed.chain.federation import FederationContract, MembershipPolicy
    from mecfed.chain.keystore import create_keystore

    async with Anvil(block_time=CHAIN_BLOCK_TIME) as anvil:
        admin = anvil.dev_accounts[0]
        async with await ChainClient.connect(anvil.ws_url, admin) as client:
            contract = await FederationContract.deploy(
                client, MembershipPolicy.ALLOWLIST, [a.address for a in anvil.dev_accounts[1:]]
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
            "contract": contract.address,
            "password_file": str(password),
            "keystores": keystores,
            "anvil": anvil,
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
            mef = await mef_server.start(config, orchestrator=meo, settings=settings)
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
