"""Building blocks every mecfed gRPC server and client shares: health
checking, server reflection, mutual TLS and the one place where domain
errors become status codes."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mecfed.errors import grpc_status_of

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def map_errors(method: F) -> F:
    """Decorates a servicer method (unary or server-streaming) so that domain
    exceptions abort the call with their mapped status code."""

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                code, msg = grpc_status_of(exc)
                if code == grpc.StatusCode.INTERNAL:
                    log.exception("%s failed", method.__qualname__)
                await context.abort(code, msg)

        return stream_wrapper  # type: ignore[return-value]

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, msg = grpc_status_of(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method.__qualname__)
            await context.abort(code, msg)

    return unary_wrapper  # type: ignore[return-value]


def add_health_and_reflection(
    server: grpc.aio.Server, service_full_names: Iterable[str]
) -> health.aio.HealthServicer:
    """Registers grpc.health.v1 (every service SERVING) and reflection, so
    grpcurl and standard health probes work against every mecfed server."""
    names = list(service_full_names)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    return health_servicer


async def mark_serving(health_servicer: Any, service_full_names: Iterable[str]) -> None:
    for name in ["", *service_full_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
