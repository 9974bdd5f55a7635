"""One way to run a mecfed gRPC server: services from plain objects
(:mod:`mecfed.rpc.service`), mutual TLS, an authorisation policy that must be
given, health checking, server reflection (v1 and v1alpha) and a graceful
stop that first tells health checkers the server is going away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as reflection_v1alpha
from grpc_reflection.v1alpha._async import ReflectionServicer

from mecfed.rpc.security import PeerAuthorizer
from mecfed.rpc.service import service_handler

log = logging.getLogger(__name__)

#: ``policy(method, peer_id)``: may the MEC system ``peer_id`` (from its
#: client certificate) call ``method`` (``/package.Service/Method``)?
AccessPolicy = Callable[[str, str], bool]

HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION_V1ALPHA = reflection_v1alpha.DESCRIPTOR.services_by_name["ServerReflection"].full_name
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


@dataclass
class Server:
    """A started server; :meth:`stop` it."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    services: tuple[str, ...]

    async def mark_serving(self) -> None:
        """Health turns SERVING for the server and each of its services."""
        for name in ["", *self.services]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = 1.0) -> None:
        """Graceful: health turns NOT_SERVING first (clients and probes stop
        sending), then calls in flight get ``grace`` seconds to finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def _register_reflection_v1() -> None:
    """grpcio-reflection only ships v1alpha; v1 is the same protocol with the
    same messages under another package. Registers its descriptor so that
    clients asking v1 (newer grpcurl, grpcui) can describe it too."""
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(REFLECTION_V1)
        return
    except KeyError:
        pass
    v1 = descriptor_pb2.FileDescriptorProto()
    reflection_v1alpha.DESCRIPTOR.CopyToProto(v1)
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    v1.name = "grpc/reflection/v1/reflection.proto"
    v1.package = "grpc.reflection.v1"
    for message in v1.message_type:
        for message_field in message.field:
            if message_field.HasField("type_name"):
                message_field.type_name = message_field.type_name.replace(old, new)
    for service in v1.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(v1)


def _reflection_handlers(names: Sequence[str]) -> list[grpc.GenericRpcHandler]:
    _register_reflection_v1()
    servicer = ReflectionServicer([*names, HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA])
    handlers = []
    for service in (REFLECTION_V1ALPHA, REFLECTION_V1):
        # v1 and v1alpha messages are wire-identical: one servicer serves both.
        method = grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_v1alpha.ServerReflectionRequest.FromString,
            response_serializer=reflection_v1alpha.ServerReflectionResponse.SerializeToString,
        )
        handlers.append(
            grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": method})
        )
    return handlers


async def start_server(
    listen: str,
    credentials: grpc.ServerCredentials | None,
    services: Sequence[tuple[ServiceDescriptor, object]],
    *,
    access: AccessPolicy | None,
    interceptors: Sequence[Any] = (),
    ready: bool = True,
) -> Server:
    """Starts serving ``services`` (descriptor, implementation) on ``listen``.

    ``access`` is required: a server without an authorisation policy refuses
    to start (callers are admitted per method by the system id in their
    client certificate). ``credentials=None`` serves without TLS, for tests
    of a single component only; every caller is then refused by ``access``
    unless the policy admits the anonymous peer id ``""``. ``interceptors`` run first (tracing),
    so refused calls still appear in traces. ``ready=False`` leaves health
    NOT_SERVING until :meth:`Server.mark_serving` (a server that still has
    work to do before it can serve, e.g. joining the chain)."""
    if access is None:
        raise ValueError(
            f"refusing to start a gRPC server on {listen} without an authorisation policy"
        )
    authorizer = PeerAuthorizer(access, anonymous=credentials is None)
    server = grpc.aio.server(interceptors=[*interceptors, authorizer])
    names = [descriptor.full_name for descriptor, _ in services]
    server.add_generic_rpc_handlers(
        [service_handler(descriptor, impl) for descriptor, impl in services]
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers(_reflection_handlers(names))
    if credentials is None:
        log.warning("gRPC server on %s WITHOUT TLS (tests only)", listen)
        port = server.add_insecure_port(listen)
    else:
        port = server.add_secure_port(listen, credentials)
    if port == 0 and not listen.startswith("unix:"):
        raise OSError(f"could not bind {listen}")
    await server.start()
    started = Server(server, port, health_servicer, tuple(names))
    if ready:
        await started.mark_serving()
    else:
        for name in ["", *names]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    return started


__all__ = ["AccessPolicy", "Server", "start_server"]
