"""OpenTelemetry tracing for mecfed processes (MEF, MEO, demo driver).

Design constraints, and why:

* Tracing is opt-in: with no endpoint (argument or ``OTEL_EXPORTER_OTLP_*``
  environment variable) ``setup_tracing`` returns ``None`` and every helper
  here degrades to a no-op, so untraced runs pay nothing.
* Providers are *not* installed globally by default: tests and the demo run
  several logical services (consumer MEF, provider MEF, MEOs) in one process,
  each needing its own ``service.name`` resource, so callers pass the provider
  explicitly.
* A collector that is down must never slow or break federation: spans are
  queued in a bounded ``BatchSpanProcessor`` (dropped when full), the exporter
  gives up after ``EXPORT_TIMEOUT_S``, and ``shutdown`` is bounded in time even
  though the SDK's own shutdown/force_flush ignore their timeouts.
* Processes inside testbed network namespaces cannot reach the host's
  loopback; ``rewrite_loopback`` maps such an endpoint to the gateway address.

Context crosses process boundaries in two ways:

* gRPC calls: ``client_interceptors``/``server_interceptors`` carry the W3C
  ``traceparent`` in call metadata (opentelemetry-instrumentation-grpc; it uses
  the global propagator, which defaults to W3C tracecontext + baggage).
* Anything else (e.g. an offer relayed through a blockchain event):
  ``inject_traceparent`` / ``extract_context`` give an explicit string.
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from mecfed.config import SystemConfig
    from mecfed.model import TrafficReport

log = logging.getLogger(__name__)

ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"

# Short delay so a demo's trace is visible in Jaeger about when the demo ends.
SCHEDULE_DELAY_MS = 2000
# Bounded memory if the collector is unreachable: beyond this spans are dropped.
MAX_QUEUE_SIZE = 2048
MAX_EXPORT_BATCH_SIZE = 512
# Per export call, retries included; the export runs on the processor's
# worker thread, never on the caller's.
EXPORT_TIMEOUT_S = 2.0
SHUTDOWN_TIMEOUT_S = 3.0

_W3C = TraceContextTextMapPropagator()
# provider -> exporter, so shutdown() can abort a stuck export (the SDK keeps
# the exporter private inside the processor).
_EXPORTERS: weakref.WeakKeyDictionary[TracerProvider, SpanExporter] = weakref.WeakKeyDictionary()
_SHUT_DOWN: weakref.WeakSet[TracerProvider] = weakref.WeakSet()


def resolve_endpoint(endpoint: str | None = None) -> str | None:
    """The OTLP endpoint to use: the argument, else the traces-specific env
    var, else the generic one; ``None`` (tracing off) when all are empty."""
    for candidate in (endpoint, os.environ.get(ENV_TRACES_ENDPOINT), os.environ.get(ENV_ENDPOINT)):
        if candidate and candidate.strip():
            return candidate.strip()
    return None


def _split_host_port(hostport: str) -> tuple[str, str]:
    """'host:port' / '[v6]:port' / 'host' / bare IPv6 -> (host, ':port' or '')."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1:
            return hostport[1:end], hostport[end + 1 :]
    if hostport.count(":") == 1:
        host, port = hostport.split(":")
        return host, ":" + port
    return hostport, ""  # plain host, or an unbracketed IPv6 literal


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def rewrite_loopback(endpoint: str, gateway: str) -> str:
    """Maps an endpoint on the host's loopback to ``gateway`` (keeping scheme,
    port and path), because inside a network namespace 127.0.0.1 is the
    namespace's own loopback, not the host's; the collector must then listen
    on all interfaces (or the gateway address). Other endpoints are unchanged."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "", endpoint
    hostport, slash, path = rest.partition("/")
    host, port = _split_host_port(hostport)
    if not _is_loopback(host):
        return endpoint
    gw = f"[{gateway}]" if ":" in gateway and not gateway.startswith("[") else gateway
    prefix = f"{scheme}://" if sep else ""
    return f"{prefix}{gw}{port}{slash}{path}"


def build_resource(
    service_name: str,
    *,
    system_id: str,
    role: str,
    backend: str,
    extra: Mapping[str, Any] | None = None,
) -> Resource:
    attributes: dict[str, Any] = {
        "service.name": service_name,
        "service.namespace": "mecfed",
        # Unique per process so Jaeger can tell two MEFs of the same name apart.
        "service.instance.id": f"{system_id}-{service_name}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        "mecfed.system_id": system_id,
        "mecfed.role": role,
        "mecfed.backend": backend,
    }
    attributes.update(extra or {})
    # Resource.create would also merge OTEL_RESOURCE_ATTRIBUTES and SDK info;
    # ours win on conflicts.
    return Resource.create(attributes)


def setup_for_system(service_name: str, config: SystemConfig) -> TracerProvider | None:
    """``setup_tracing`` for one MEC system's process (MEF or MEO)."""
    return setup_tracing(
        service_name,
        system_id=config.system_id,
        role=config.role or "both",
        backend=config.backend,
        endpoint=config.otlp_endpoint or None,
    )


def setup_tracing(
    service_name: str,
    *,
    system_id: str,
    role: str,
    backend: str,
    endpoint: str | None = None,
    extra: Mapping[str, Any] | None = None,
    set_global: bool = False,
    gateway: str | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider | None:
    """A TracerProvider exporting over OTLP/gRPC (insecure), or ``None`` when
    no endpoint is configured. ``gateway`` applies ``rewrite_loopback`` (for
    processes inside a testbed namespace); ``exporter`` replaces the OTLP
    exporter (tests). Call ``shutdown(provider)`` before exiting; an atexit
    hook does it (bounded) otherwise."""
    url = resolve_endpoint(endpoint)
    if exporter is None and url is None:
        return None
    if exporter is None:
        assert url is not None
        if gateway:
            url = rewrite_loopback(url, gateway)
        # Imported lazily: it pulls grpc + protobuf stubs, needless when off.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=url, insecure=True, timeout=EXPORT_TIMEOUT_S)
    resource = build_resource(
        service_name, system_id=system_id, role=role, backend=backend, extra=extra
    )
    # shutdown_on_exit=False: the SDK's atexit shutdown may block ~30 s on a
    # dead collector; we register a bounded one instead.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=MAX_QUEUE_SIZE,
            schedule_delay_millis=SCHEDULE_DELAY_MS,
            max_export_batch_size=MAX_EXPORT_BATCH_SIZE,
            export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
        )
    )
    _EXPORTERS[provider] = exporter
    ref = weakref.ref(provider)
    atexit.register(lambda: (p := ref()) is not None and shutdown(p))
    if set_global:
        trace.set_tracer_provider(provider)
    log.info("tracing %s (%s) to %s", service_name, system_id, url or type(exporter).__name__)
    return provider


def shutdown(provider: TracerProvider | None, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> bool:
    """Flushes pending spans and stops the exporter, waiting at most
    ``timeout_s``. Returns False if it had to give up (spans dropped).
    Idempotent; ``None`` is accepted."""
    if provider is None or provider in _SHUT_DOWN:
        return True
    _SHUT_DOWN.add(provider)
    # provider.shutdown() joins the worker thread, which may sit in export
    # retries for a dead collector; run it aside and bound the wait.
    worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not worker.is_alive():
        return True
    exporter = _EXPORTERS.get(provider)
    if exporter is not None:
        # Aborts the exporter's retry backoff and makes further exports no-ops,
        # so the worker thread ends promptly.
        exporter.shutdown()
    worker.join(0.5)
    log.warning("tracing shutdown timed out after %.1f s; pending spans dropped", timeout_s)
    return False


async def shutdown_async(
    provider: TracerProvider | None, timeout_s: float = SHUTDOWN_TIMEOUT_S
) -> bool:
    """``shutdown`` off the event loop. Use it from async code: the final
    export is a blocking gRPC call, and if the collector (e.g.
    ``mecfed.collector.SpanCollector``) is served by the same loop, a blocking
    shutdown would starve it and drop the last spans."""
    return await asyncio.to_thread(shutdown, provider, timeout_s)


def tracer(provider: TracerProvider | None, name: str = "mecfed") -> Tracer:
    """A tracer bound to ``provider``; a no-op tracer when tracing is off."""
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(name)


def server_interceptors(provider: TracerProvider | None) -> list[Any]:
    """Interceptors for ``grpc.aio.server(interceptors=...)``: one SERVER span
    per RPC, child of the caller's span found in the ``traceparent`` metadata."""
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=provider)]


def client_interceptors(provider: TracerProvider | None) -> list[Any]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)``:
    one CLIENT span per RPC and ``traceparent`` injected into the metadata.
    Note: with these, a unary-stream call object is an async iterator only
    (``async for``); ``call.read()`` is not supported by grpc.aio then."""
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=provider))


def inject_traceparent(context: Context | None = None) -> str:
    """W3C ``traceparent`` of the current (or given) span context, '' when
    there is no valid span. Independent of the global propagator setting."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return carrier.get("traceparent", "")


def extract_context(traceparent: str | None) -> Context:
    """A Context whose parent is the remote span named by ``traceparent``; an
    empty Context (new root) when it is missing or malformed."""
    if not traceparent:
        return Context()
    return _W3C.extract({"traceparent": traceparent})


def _attr_value(value: Any) -> Any:
    """OTel attributes take str/bool/int/float (or sequences of them)."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | bool | int | float) for v in value
    ):
        return list(value)
    return str(value)


def clean_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Drops None values and converts the rest to valid attribute values."""
    return {k: _attr_value(v) for k, v in attributes.items() if v is not None}


@contextmanager
def step_span(
    tracer: Tracer,
    name: str,
    /,
    *,
    context: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attrs: Mapping[str, Any] | None = None,
    **attributes: Any,
) -> Iterator[Span]:
    """A current span around one workflow step. Keyword attributes are taken
    as is (``vni=42``); dotted names go through ``attrs``. ``context`` (from
    ``extract_context``) sets a remote parent. An exception is recorded, the
    status set to ERROR and the exception re-raised; cancellation is marked
    too since an abandoned step is what one looks for in a trace."""
    merged = clean_attributes({**(attrs or {}), **attributes})
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=merged,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        except BaseException as exc:  # CancelledError, KeyboardInterrupt
            span.set_attribute("mecfed.cancelled", True)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def set_attributes(span: Span, **attributes: Any) -> None:
    """Adds results learnt during a step (tx hash, block, gas...) to ``span``."""
    span.set_attributes(clean_attributes(attributes))


def set_traffic(span: Span, report: TrafficReport) -> None:
    """The app-to-app traffic check's result on ``span``, the same attributes
    wherever the check is recorded (the consumer's MEF and its MEO)."""
    set_attributes(
        span,
        sent=report.sent,
        received=report.received,
        loss=report.loss,
        rtt_ms=report.rtt_ms,
        warmup_ms=round(report.warmup_ms, 1),
    )


def current_trace_id() -> str:
    """Hex trace id of the current span ('' if none), e.g. to print a Jaeger link."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
