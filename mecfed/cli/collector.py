"""A minimal in-process OTLP/gRPC span collector.

Used when no Jaeger is at hand: the demo starts one on the testbed gateway
address (reachable from every namespace), points the MEF/MEO processes at it,
and appends every received span to a JSONL file that ``mecfed trace`` renders
with :mod:`mecfed.cli.trace_view`. The test suite uses it as its OTLP receiver.

Spans are flattened to plain dicts (see ``span_to_dict``) so they can be
written as JSON and rendered without the OTel SDK.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

from mecfed.rpc.server import Server
from mecfed.rpc.service import service_handler

log = logging.getLogger(__name__)

SpanDict = dict[str, Any]

_KIND = {v: k.removeprefix("SPAN_KIND_") for k, v in Span.SpanKind.items()}
_STATUS = {v: k.removeprefix("STATUS_CODE_") for k, v in Status.StatusCode.items()}


def any_value(value: AnyValue) -> Any:
    """OTLP AnyValue -> JSON-able Python value."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_dict(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes_dict(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attributes}


def span_to_dict(span: Span, resource: dict[str, Any], scope: str = "") -> SpanDict:
    """One OTLP span, flattened; ids are lowercase hex, '' for no parent."""
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "name": span.name,
        "kind": _KIND.get(span.kind, str(span.kind)),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "status": _STATUS.get(span.status.code, str(span.status.code)),
        "status_message": span.status.message,
        "attributes": attributes_dict(span.attributes),
        "events": [
            {
                "name": e.name,
                "time_ns": e.time_unix_nano,
                "attributes": attributes_dict(e.attributes),
            }
            for e in span.events
        ],
        "resource": resource,
        "service_name": resource.get("service.name", ""),
        "scope": scope,
    }


def flatten(resource_spans: Iterable[ResourceSpans]) -> list[SpanDict]:
    out: list[SpanDict] = []
    for rs in resource_spans:
        resource = attributes_dict(rs.resource.attributes)
        for ss in rs.scope_spans:
            out.extend(span_to_dict(s, resource, ss.scope.name) for s in ss.spans)
    return out


TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]


class TraceService:
    """``opentelemetry.proto.collector.trace.v1.TraceService``, served through
    :func:`mecfed.rpc.service.service_handler` (malformed exports are
    INVALID_ARGUMENT, like on every mecfed server)."""

    def __init__(self, sink: Callable[[list[SpanDict]], None]) -> None:
        self._sink = sink

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink(flatten(request.resource_spans))
        return trace_service_pb2.ExportTraceServiceResponse()


class SpanCollector:
    """OTLP/gRPC trace receiver on a grpc.aio server.

    ``async with SpanCollector(host, port) as c:`` starts it (port 0 picks a
    free port, see ``c.port`` / ``c.endpoint``) and always stops it on exit.
    Received spans accumulate in ``c.spans`` and, if ``jsonl_path`` is given,
    are appended to that file as they arrive (so a crash loses nothing)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, jsonl_path: str | Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.jsonl_path = Path(jsonl_path) if jsonl_path else None
        self.spans: list[SpanDict] = []
        self._server: Server | None = None
        self._changed = asyncio.Event()

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _receive(self, spans: list[SpanDict]) -> None:
        self.spans.extend(spans)
        if self.jsonl_path is not None:
            with self.jsonl_path.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(s, sort_keys=True) + "\n" for s in spans)
        self._changed.set()

    async def start(self) -> None:
        server = grpc.aio.server(
            # Exporter batches are up to 512 spans; leave room.
            options=[("grpc.max_receive_message_length", 32 * 1024 * 1024)]
        )
        server.add_generic_rpc_handlers(
            [service_handler(TRACE_SERVICE, TraceService(self._receive))]
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        bind = f"[{self.host}]" if ":" in self.host else self.host
        # Plain OTLP/gRPC without TLS, as exporters speak it by default.
        port = server.add_insecure_port(f"{bind}:{self.port}")
        if port == 0:
            raise OSError(f"cannot listen on {bind}:{self.port}")
        self.port = port
        await server.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        self._server = Server(server, port, health_servicer, (TRACE_SERVICE.full_name,))
        log.info("span collector listening on %s", self.endpoint)

    async def stop(self, grace: float = 0.5) -> None:
        """Graceful: health turns NOT_SERVING, exports in flight get ``grace``
        seconds to finish (their spans are kept), then the server stops."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def __aenter__(self) -> SpanCollector:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_for(
        self, predicate: Callable[[list[SpanDict]], bool], timeout: float = 10.0
    ) -> list[SpanDict]:
        """Waits until ``predicate(spans)`` holds; TimeoutError (listing the
        span names seen so far) otherwise."""
        async with asyncio.timeout(timeout):
            while not predicate(self.spans):
                self._changed.clear()
                await self._changed.wait()
        return self.spans

    async def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[SpanDict]:
        try:
            return await self.wait_for(lambda s: len(s) >= count, timeout)
        except TimeoutError:
            names = sorted({s["name"] for s in self.spans})
            raise TimeoutError(
                f"{len(self.spans)}/{count} spans after {timeout}s: {names}"
            ) from None

    def by_name(self, name: str) -> list[SpanDict]:
        return [s for s in self.spans if s["name"] == name]


async def _serve(host: str, port: int, jsonl: str | None) -> None:
    async with SpanCollector(host, port, jsonl_path=jsonl) as collector:
        print(f"collecting spans on {collector.endpoint}" + (f" into {jsonl}" if jsonl else ""))
        await asyncio.Event().wait()  # until Ctrl-C / SIGTERM


def main(argv: list[str] | None = None) -> int:
    """``python -m mecfed.cli.collector [--host H] [--port P] [--jsonl FILE]``:
    a stand-alone collector; render with ``python -m mecfed.cli.trace_view FILE``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mecfed.cli.collector", description=main.__doc__)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (testbed gateway)")
    ap.add_argument("--port", type=int, default=4317)
    ap.add_argument("--jsonl", default="spans.jsonl", help="file spans are appended to")
    args = ap.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, args.jsonl))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
