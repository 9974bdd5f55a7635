"""Real OTLP/gRPC receiver for tests.

It is ``mecfed.cli.collector.SpanCollector`` (the demo's fallback collector), so
the tests exercise the same code path the demo relies on:

    async with OtlpReceiver() as rx:            # 127.0.0.1, free port
        provider = setup_tracing(..., endpoint=rx.endpoint)
        ...
        spans = await rx.wait_for(lambda s: len(s) >= 3, timeout=5)

Each span is a dict: trace_id, span_id, parent_span_id (hex, '' for roots),
name, kind, start_ns, end_ns, status, status_message, attributes, events,
resource (incl. service.name), service_name, scope.
"""

from __future__ import annotations

from mecfed.cli.collector import SpanCollector, SpanDict

OtlpReceiver = SpanCollector

__all__ = ["OtlpReceiver", "SpanDict"]
