"""The MEO's gRPC edge: health and reflection, who may call it, malformed
messages at every RPC, graceful stop."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from meo_fakes import FakeNet, FakeVim
from meo_helpers import issue_identities, make_config

from mecfed.rpc import server_credentials
from mecfed.rpc.security import secure_channel
from mecfed.v1 import orchestrator_pb2 as pb
from mecfed.v1 import orchestrator_pb2_grpc
from meo.orchestrator import Orchestrator
from meo.server import SERVICE, allow_any_caller, serve


async def test_health_and_reflection(meo, tmp_path):
    config = make_config("sys-h", tmp_path)
    vim = FakeVim()
    orch = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    server = await serve(
        config, None, orchestrator=orch, listen="127.0.0.1:0", access=allow_any_caller
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="mecfed.v1.MecOrchestrator")
            )
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
async def test_malformed_bytes_at_every_rpc_are_invalid_argument(env, method):
    call = env.channel.unary_unary(f"/mecfed.v1.MecOrchestrator/{method}")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"\xff\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed request" in err.value.details()
    assert env.leftovers() == {}


async def test_an_insecure_server_without_a_policy_admits_no_one(tmp_path):
    """The default policy admits only this system's own id; an insecure
    caller has none, so a test server must opt in to anonymous callers."""
    config = make_config("sys-a", tmp_path)
    vim = FakeVim()
    orch = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    server = await serve(config, None, orchestrator=orch, listen="127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await orchestrator_pb2_grpc.MecOrchestratorStub(ch).ListApps(pb.ListAppsRequest())
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)


async def test_only_this_systems_own_certificate_may_call(tmp_path):
    ids = issue_identities(tmp_path / "pki", "sys-a", "sys-b")
    own, other = ids["sys-a"], ids["sys-b"]
    config = make_config("sys-a", tmp_path, tls=own)
    vim = FakeVim()
    orch = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    server = await serve(config, server_credentials(own), orchestrator=orch, listen="127.0.0.1:0")
    target = f"127.0.0.1:{server.port}"
    try:
        async with secure_channel(target, own, "sys-a") as ch:
            stub = orchestrator_pb2_grpc.MecOrchestratorStub(ch)
            assert (await stub.ListApps(pb.ListAppsRequest())).apps == []
        async with secure_channel(target, other, "sys-a") as ch:
            stub = orchestrator_pb2_grpc.MecOrchestratorStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.CreateApp(pb.CreateAppRequest(name="x"))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert vim.creates == 0
    finally:
        await server.stop(None)


async def test_stop_ends_serving(tmp_path):
    config = make_config("sys-a", tmp_path)
    vim = FakeVim()
    orch = Orchestrator(config, {vim.host: vim}, net=FakeNet())
    server = await serve(
        config, None, orchestrator=orch, listen="127.0.0.1:0", access=allow_any_caller
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = orchestrator_pb2_grpc.MecOrchestratorStub(ch)
        await stub.ListApps(pb.ListAppsRequest())
        await server.stop(0.5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListApps(pb.ListAppsRequest(), timeout=2)
        assert err.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )


def test_a_config_without_a_usable_underlay_is_refused(tmp_path):
    vim = FakeVim()
    for ip in ("127.0.0.1", "", "::1"):
        with pytest.raises(ValueError, match="underlay_ip"):
            Orchestrator(make_config("sys-a", tmp_path, underlay_ip=ip), {vim.host: vim})
