"""The gRPC edge: status mapping, BadRequest details, malformed messages,
unimplemented methods, health shutdown and reflection (real server, port 0)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mecfed.errors import FailedPrecondition, FieldViolation, InvalidArgument
from mecfed.rpc import error_from_rpc, start_server
from mecfed.rpc.status import violations_of
from mecfed.v1 import common_pb2, federator_pb2, federator_pb2_grpc

SERVICE = federator_pb2.DESCRIPTOR.services_by_name["MecFederator"]


class Impl:
    """Implements a few MecFederator methods, each failing its own way."""

    async def GetSystem(self, request, context):
        if request.system_id == "bad":
            raise InvalidArgument.field("system_id", "is bad")
        if request.system_id == "boom":
            raise KeyError("secret internals")
        if request.system_id == "refused":
            raise FailedPrecondition("not now")
        return common_pb2.SystemInfo(system_id=request.system_id)

    async def WatchSystems(self, request, context) -> AsyncIterator[object]:
        yield federator_pb2.SystemUpdateNotification()
        raise InvalidArgument("stream broke", (FieldViolation("a.b", "is wrong"),))


def allow_all(method: str, peer: str) -> bool:
    return True


@pytest.fixture
async def server():
    srv = await start_server("127.0.0.1:0", None, [(SERVICE, Impl())], access=allow_all)
    try:
        yield srv
    finally:
        await srv.stop(0)


@pytest.fixture
async def channel(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


async def test_ok_and_domain_errors_map_to_their_codes(channel):
    stub = federator_pb2_grpc.MecFederatorStub(channel)
    assert (await stub.GetSystem(federator_pb2.GetSystemRequest(system_id="x"))).system_id == "x"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetSystem(federator_pb2.GetSystemRequest(system_id="refused"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "not now"


async def test_invalid_argument_carries_bad_request_details(channel):
    stub = federator_pb2_grpc.MecFederatorStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetSystem(federator_pb2.GetSystemRequest(system_id="bad"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations_of(err.value) == (FieldViolation("system_id", "is bad"),)
    back = error_from_rpc(err.value, "GetSystem")
    assert isinstance(back, InvalidArgument)
    assert back.violations == (FieldViolation("system_id", "is bad"),)


async def test_unexpected_exception_hides_internals(channel):
    stub = federator_pb2_grpc.MecFederatorStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetSystem(federator_pb2.GetSystemRequest(system_id="boom"))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "KeyError" not in err.value.details() and "secret" not in err.value.details()
    assert "incident" in err.value.details()


async def test_malformed_request_is_invalid_argument(channel):
    call = channel.unary_unary("/mecfed.v1.MecFederator/GetSystem")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"\xff\xff\xff\xff")  # a truncated varint tag: not a message
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mecfed.v1.GetSystemRequest" in err.value.details()


async def test_stream_errors_after_items(channel):
    stub = federator_pb2_grpc.MecFederatorStub(channel)
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for item in stub.WatchSystems(federator_pb2.WatchSystemsRequest()):
            got.append(item)
    assert len(got) == 1
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations_of(err.value) == (FieldViolation("a.b", "is wrong"),)


async def test_unimplemented_method(channel):
    stub = federator_pb2_grpc.MecFederatorStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListSystems(federator_pb2.ListSystemsRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
async def test_reflection_lists_services(channel, version):
    method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    call = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    stream = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = set()
    async for reply in stream:
        names |= {s.name for s in reply.list_services_response.service}
    assert {"mecfed.v1.MecFederator", "grpc.health.v1.Health"} <= names
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= (
        names
    )
    assert reflection_pb2_grpc  # the v1alpha stub module is importable (grpcurl's default)


async def test_stop_enters_graceful_health_shutdown(server, channel):
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="mecfed.v1.MecFederator"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await server.health.enter_graceful_shutdown()
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_a_server_without_authorisation_policy_refuses_to_start():
    with pytest.raises(ValueError, match="authorisation policy"):
        await start_server("127.0.0.1:0", None, [(SERVICE, Impl())], access=None)


async def test_a_server_not_ready_says_not_serving_until_marked():
    srv = await start_server(
        "127.0.0.1:0", None, [(SERVICE, Impl())], access=allow_all, ready=False
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            request = health_pb2.HealthCheckRequest(service="mecfed.v1.MecFederator")
            assert (
                await health.Check(request)
            ).status == health_pb2.HealthCheckResponse.NOT_SERVING
            await srv.mark_serving()
            assert (await health.Check(request)).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await srv.stop(0)
