"""Serves a protobuf service from a plain Python object, with the error edge
built in.

:func:`service_handler` reads the methods of a service from its descriptor
and calls the object's method of the same name with the decoded request.
Servicers therefore stay thin: they convert messages (mecfed.wire) and call
the domain, and never pick status codes or catch exceptions. The adapter

* decodes requests itself, so a malformed message is INVALID_ARGUMENT with
  the message type named, not an UNKNOWN with a Python class name;
* turns any exception into its status (:func:`mecfed.rpc.status.status_of`),
  field violations as ``google.rpc.BadRequest`` details;
* refuses to serve a method the object does not implement (UNIMPLEMENTED).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from mecfed.errors import InvalidArgument
from mecfed.rpc.status import status_of

log = logging.getLogger(__name__)


def decode(message_class: type[Message], raw: bytes) -> Message:
    try:
        return message_class.FromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidArgument(
            f"malformed request: not a valid {message_class.DESCRIPTOR.full_name} message "
            f"({len(raw)} bytes): {exc}"
        ) from None


def _unary(
    method: Callable[..., Any], request_class: type[Message], full_name: str
) -> Callable[..., Any]:
    async def behavior(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(decode(request_class, raw), context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await context.abort_with_status(status_of(exc, full_name).to_rich())

    return behavior


def _server_stream(
    method: Callable[..., Any], request_class: type[Message], full_name: str
) -> Callable[..., Any]:
    async def behavior(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in method(decode(request_class, raw), context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await context.abort_with_status(status_of(exc, full_name).to_rich())

    return behavior


def _unimplemented(full_name: str) -> Callable[..., Any]:
    async def behavior(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{full_name} is not implemented")

    return behavior


def _handler(impl: object, method: MethodDescriptor) -> grpc.RpcMethodHandler:
    full_name = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming:
        raise ValueError(f"{full_name}: client-streaming methods are not supported")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    fn = getattr(impl, method.name, None)
    serializer = response_class.SerializeToString
    if method.server_streaming:
        if fn is not None and not inspect.isasyncgenfunction(fn):
            raise TypeError(f"{type(impl).__name__}.{method.name} must be an async generator")
        behavior = _server_stream(fn, request_class, full_name) if fn else None
        return grpc.unary_stream_rpc_method_handler(
            behavior or _unimplemented(full_name), response_serializer=serializer
        )
    if fn is not None and not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{type(impl).__name__}.{method.name} must be a coroutine function")
    behavior = _unary(fn, request_class, full_name) if fn else None
    return grpc.unary_unary_rpc_method_handler(
        behavior or _unimplemented(full_name), response_serializer=serializer
    )


def service_handler(service: ServiceDescriptor, impl: object) -> grpc.GenericRpcHandler:
    """A handler serving every method of ``service`` from ``impl``'s methods
    of the same name (``async def Name(self, request, context)``)."""
    handlers = {m.name: _handler(impl, m) for m in service.methods}
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


__all__ = ["decode", "service_handler"]
