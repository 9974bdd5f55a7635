"""Readiness follows the transport's health() once the MEF serves (real
server, mutual TLS on loopback, fake transport and MEO)."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2, health_pb2_grpc

from mecfed.config import SystemConfig
from mecfed.rpc.security import secure_channel
from mef import server as mef_server
from tests.mef.fakes import FakeOrchestrator, FakeTransport

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Wedged(FakeTransport):
    why: str | None = None

    def health(self) -> str | None:
        return self.why


async def test_readiness_follows_the_transport(pki, tmp_path):
    config = SystemConfig(
        system_id="mec-00",
        system_name="MEC system 00",
        system_provider="operator-00",
        underlay_ip="10.213.0.10",
        mef_listen="127.0.0.1:0",
        meo_listen="127.0.0.1:1",
        tls=pki.issue("mec-00", ips=["127.0.0.1"]),
        state_dir=str(tmp_path / "state"),
    )
    transport = Wedged([])
    mef = await mef_server.start(
        config, transport=transport, orchestrator=FakeOrchestrator("mec-00", "10.213.0.10")
    )
    mef._readiness.cancel()  # type: ignore[union-attr]
    mef.follow_transport_health(every=0.02)
    assert (tmp_path / "state" / "mef-mec-00.db").exists()
    try:
        async with secure_channel(f"127.0.0.1:{mef.port}", config.tls, "mec-00") as ch:
            health = health_pb2_grpc.HealthStub(ch)

            async def status() -> int:
                answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                return answer.status

            async def becomes(wanted: int) -> None:
                while await status() != wanted:  # noqa: ASYNC110 - polling health
                    await asyncio.sleep(0.02)

            assert await status() == SERVING
            transport.why = "chain client wedged: nonce gap at 12 for 40 s"
            await asyncio.wait_for(becomes(NOT_SERVING), 5)
            transport.why = None
            await asyncio.wait_for(becomes(SERVING), 5)
    finally:
        await mef.stop(grace=0)
