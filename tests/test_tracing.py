"""Tracing infrastructure: providers, OTLP export to a real receiver, W3C
context propagation through grpc.aio interceptors, and the waterfall view."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from mecfed import tracing
from mecfed.cli.trace_view import find_traces, load_jsonl, render_waterfall, spans_to_jsonl
from tests.otlp_receiver import OtlpReceiver, SpanDict

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _provider(name: str, endpoint: str, system: str = "mec-a") -> tracing.TracerProvider:
    provider = tracing.setup_tracing(
        name, system_id=system, role="consumer", backend="chain", endpoint=endpoint
    )
    assert provider is not None
    return provider


# -- provider / configuration ------------------------------------------------------------


def test_off_without_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.ENV_ENDPOINT, raising=False)
    monkeypatch.delenv(tracing.ENV_TRACES_ENDPOINT, raising=False)
    assert tracing.setup_tracing("mef", system_id="a", role="consumer", backend="chain") is None
    assert tracing.server_interceptors(None) == []
    assert tracing.client_interceptors(None) == []
    with tracing.step_span(tracing.tracer(None, "x"), "noop", vni=1) as span:
        assert not span.get_span_context().is_valid
    assert tracing.inject_traceparent() == ""
    assert tracing.shutdown(None)


def test_resource_attributes_and_env_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracing.ENV_ENDPOINT, f"http://127.0.0.1:{_free_port()}")
    provider = tracing.setup_tracing(
        "meo", system_id="mec-b", role="provider", backend="direct", extra={"x.y": 1}
    )
    assert provider is not None
    try:
        attrs = provider.resource.attributes
        assert attrs["service.name"] == "meo"
        assert attrs["mecfed.system_id"] == "mec-b"
        assert attrs["mecfed.role"] == "provider"
        assert attrs["mecfed.backend"] == "direct"
        assert attrs["x.y"] == 1
        assert str(attrs["service.instance.id"]).startswith("mec-b-meo-")
    finally:
        tracing.shutdown(provider, timeout_s=1)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:4317", "http://10.213.0.1:4317"),
        ("127.0.0.1:4317", "10.213.0.1:4317"),
        ("localhost:4317", "10.213.0.1:4317"),
        ("http://localhost:4317", "10.213.0.1:4317".join(["http://", ""])),
        ("https://localhost:4317/v1", "https://10.213.0.1:4317/v1"),
        ("http://[::1]:4317", "http://10.213.0.1:4317"),
        ("[::1]:4317", "10.213.0.1:4317"),
        ("http://127.0.0.53:4317", "http://10.213.0.1:4317"),
        ("localhost", "10.213.0.1"),
        ("http://10.0.0.5:4317", "http://10.0.0.5:4317"),
        ("jaeger:4317", "jaeger:4317"),
        ("http://[fd00::1]:4317", "http://[fd00::1]:4317"),
    ],
)
def test_rewrite_loopback(endpoint: str, expected: str) -> None:
    assert tracing.rewrite_loopback(endpoint, "10.213.0.1") == expected


def test_rewrite_loopback_ipv6_gateway() -> None:
    assert tracing.rewrite_loopback("http://127.0.0.1:4317", "fd00::1") == "http://[fd00::1]:4317"


def test_traceparent_roundtrip() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tr = TracerProvider().get_tracer("t")
    with tr.start_as_current_span("parent") as parent:
        tp = tracing.inject_traceparent()
        assert tracing.current_trace_id() == format(parent.get_span_context().trace_id, "032x")
    assert tp.startswith("00-") and len(tp.split("-")) == 4
    with tracing.step_span(tr, "child", context=tracing.extract_context(tp)) as child:
        ctx = child.get_span_context()
    assert ctx.trace_id == parent.get_span_context().trace_id
    assert child.parent is not None and child.parent.span_id == parent.get_span_context().span_id
    assert tracing.extract_context("garbage") is not None  # new root, no error


def test_step_span_records_errors() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    with (
        pytest.raises(ValueError),
        tracing.step_span(
            provider.get_tracer("t"), "bad", attrs={"mecfed.vni": 7}, tx_hash=b"\x01", skip=None
        ),
    ):
        raise ValueError("boom")
    (span,) = mem.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert "ValueError: boom" in (span.status.description or "")
    assert span.events[0].name == "exception"
    assert dict(span.attributes or {}) == {"mecfed.vni": 7, "tx_hash": "0x01"}


# -- export to a real OTLP receiver ------------------------------------------------------


async def test_export_two_providers(tmp_path) -> None:
    async with OtlpReceiver(jsonl_path=tmp_path / "spans.jsonl") as rx:
        mef = _provider("mef", rx.endpoint, "mec-a")
        meo = _provider("meo", rx.endpoint, "mec-b")
        with tracing.step_span(tracing.tracer(mef), "federation", federation_id="f1"):
            tp = tracing.inject_traceparent()
        with tracing.step_span(
            tracing.tracer(meo), "deploy", context=tracing.extract_context(tp), vni=42
        ):
            pass
        # Export happens on the processors' threads; keep the loop free.
        await tracing.shutdown_async(mef)
        await tracing.shutdown_async(meo)
        spans = await rx.wait_for(lambda s: len(s) >= 2, timeout=5)
    by_name = {s["name"]: s for s in spans}
    assert by_name["federation"]["service_name"] == "mef"
    assert by_name["deploy"]["resource"]["service.name"] == "meo"
    assert by_name["deploy"]["resource"]["mecfed.system_id"] == "mec-b"
    assert by_name["deploy"]["attributes"]["vni"] == 42
    assert by_name["deploy"]["parent_span_id"] == by_name["federation"]["span_id"]
    assert by_name["deploy"]["trace_id"] == by_name["federation"]["trace_id"]
    assert by_name["federation"]["parent_span_id"] == ""
    # the collector's JSONL file is what `mecfed trace` reads back
    loaded = load_jsonl(tmp_path / "spans.jsonl")
    assert {s["span_id"] for s in loaded} == {s["span_id"] for s in spans}
    assert find_traces(loaded, "federation_id", "f1") == [by_name["federation"]["trace_id"]]


# -- propagation through two grpc.aio servers --------------------------------------------

_ident = {"request_deserializer": None, "response_serializer": None}


async def _start(
    handler: grpc.GenericRpcHandler, interceptors: list
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def test_grpc_aio_propagation() -> None:
    """consumer (mef) -> provider MEF server -> MEO server (unary + server
    streaming): one trace, each server span the child of its client span."""
    async with OtlpReceiver() as rx:
        consumer = _provider("mef", rx.endpoint, "mec-a")
        provider_mef = _provider("mef", rx.endpoint, "mec-b")
        meo = _provider("meo", rx.endpoint, "mec-b")

        async def meo_unary(req: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
            with tracing.step_span(tracing.tracer(meo), "meo.work"):
                return b"ok:" + req

        async def meo_stream(req: bytes, ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            for i in range(3):
                with tracing.step_span(tracing.tracer(meo), "meo.tick", i=i):
                    yield b"%d" % i

        meo_handler = grpc.method_handlers_generic_handler(
            "test.Meo",
            {
                "Do": grpc.unary_unary_rpc_method_handler(meo_unary, **_ident),
                "Watch": grpc.unary_stream_rpc_method_handler(meo_stream, **_ident),
            },
        )
        meo_server, meo_port = await _start(meo_handler, tracing.server_interceptors(meo))
        meo_channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{meo_port}", interceptors=tracing.client_interceptors(provider_mef)
        )

        async def mef_federate(req: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
            with tracing.step_span(tracing.tracer(provider_mef), "provider.deploy"):
                out = await meo_channel.unary_unary("/test.Meo/Do")(req)
                ticks = [r async for r in meo_channel.unary_stream("/test.Meo/Watch")(req)]
            return out + b"|" + b",".join(ticks)

        mef_handler = grpc.method_handlers_generic_handler(
            "test.Mef", {"Federate": grpc.unary_unary_rpc_method_handler(mef_federate, **_ident)}
        )
        mef_server, mef_port = await _start(mef_handler, tracing.server_interceptors(provider_mef))
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{mef_port}", interceptors=tracing.client_interceptors(consumer)
            ) as ch:
                with tracing.step_span(tracing.tracer(consumer), "federation") as root:
                    reply = await ch.unary_unary("/test.Mef/Federate")(b"x")
            assert reply == b"ok:x|0,1,2"
        finally:
            await meo_channel.close()
            await mef_server.stop(None)
            await meo_server.stop(None)
        for p in (consumer, provider_mef, meo):
            await tracing.shutdown_async(p)
        # root + client/server Federate + provider.deploy + client/server Do
        # + meo.work + client/server Watch + 3 ticks = 12
        spans = await rx.wait_for(lambda s: len(s) >= 12, timeout=5)

    trace_id = format(root.get_span_context().trace_id, "032x")
    assert {s["trace_id"] for s in spans} == {trace_id}
    by_id = {s["span_id"]: s for s in spans}

    def one(name: str, kind: str | None = None) -> SpanDict:
        (hit,) = [s for s in spans if s["name"] == name and (kind is None or s["kind"] == kind)]
        return hit

    def parent(span: SpanDict) -> SpanDict:
        return by_id[span["parent_span_id"]]

    fed_client = one("/test.Mef/Federate", "CLIENT")
    fed_server = one("/test.Mef/Federate", "SERVER")
    assert parent(fed_client)["name"] == "federation"
    assert parent(fed_server) is fed_client
    assert fed_server["resource"]["mecfed.system_id"] == "mec-b"
    deploy = one("provider.deploy")
    assert parent(deploy) is fed_server
    for method in ("/test.Meo/Do", "/test.Meo/Watch"):
        client, server = one(method, "CLIENT"), one(method, "SERVER")
        assert parent(client) is deploy
        assert parent(server) is client
        assert server["service_name"] == "meo"
    assert parent(one("meo.work"))["name"] == "/test.Meo/Do"
    ticks = [s for s in spans if s["name"] == "meo.tick"]
    assert len(ticks) == 3
    assert all(parent(t) is one("/test.Meo/Watch", "SERVER") for t in ticks)
    out = render_waterfall(spans, trace_id)
    assert "meo.tick" in out and "provider.deploy" in out


# -- a dead collector must not hurt ------------------------------------------------------


def test_down_collector_is_cheap() -> None:
    provider = _provider("mef", f"http://127.0.0.1:{_free_port()}")
    tr = tracing.tracer(provider)
    t0 = time.monotonic()
    for i in range(200):
        with tracing.step_span(tr, "step", i=i):
            pass
    loop_s = time.monotonic() - t0
    tracing.shutdown(provider, timeout_s=2.0)
    total_s = time.monotonic() - t0
    assert loop_s < 0.5, loop_s
    assert total_s < 3.0, total_s


def test_unroutable_collector_shutdown_is_bounded() -> None:
    # TEST-NET-1 (RFC 5737): connection attempts hang rather than fail fast.
    provider = _provider("mef", "http://192.0.2.1:4317")
    with tracing.step_span(tracing.tracer(provider), "step"):
        pass
    t0 = time.monotonic()
    tracing.shutdown(provider, timeout_s=1.0)
    assert time.monotonic() - t0 < 2.0


# -- waterfall ---------------------------------------------------------------------------


def _span(sid: str, parent: str, name: str, start: int, end: int, svc: str, **attrs) -> SpanDict:
    return {
        "trace_id": "ab" * 16,
        "span_id": sid,
        "parent_span_id": parent,
        "name": name,
        "start_ns": start * 1_000_000,
        "end_ns": end * 1_000_000,
        "status": "ERROR" if attrs.pop("error", False) else "UNSET",
        "status_message": "",
        "attributes": attrs,
        "resource": {"service.name": svc, "mecfed.system_id": "mec-a"},
        "service_name": svc,
    }


def test_waterfall_three_levels(tmp_path) -> None:
    spans = [
        # deliberately shuffled: rendering must order by tree, then start time
        _span("03", "02", "meo.deploy", 30, 80, "meo", vni=42),
        _span("01", "", "federation", 0, 100, "mef", federation_id="f1"),
        _span("04", "01", "settle", 85, 100, "mef", tx_hash="0x" + "ab" * 32, block=7, gas=21000),
        _span("02", "01", "offer_collection", 10, 80, "mef", error=True),
        _span("99", "", "other-trace", 0, 1, "mef") | {"trace_id": "cd" * 16},
    ]
    spans_to_jsonl(spans, tmp_path / "s.jsonl")
    out = render_waterfall(load_jsonl(tmp_path / "s.jsonl"), width=20, ascii_only=True)
    lines = out.splitlines()
    assert lines[0].startswith("trace " + "ab" * 16) and "4 spans" in lines[0]
    body = lines[2:]
    names = [ln.split("|")[0].rstrip().rsplit("  ", 1)[-1].strip(" !") for ln in body]
    assert names == ["federation", "offer_collection", "meo.deploy", "settle"]
    indent = {n: body[i].index(n) for i, n in enumerate(names)}
    assert indent["offer_collection"] == indent["federation"] + 2
    assert indent["meo.deploy"] == indent["federation"] + 4
    assert indent["settle"] == indent["offer_collection"]
    bars = [ln.split("|")[1] for ln in body]
    assert bars[0] == "#" * 20  # the root spans the whole trace
    assert bars[2].index("#") == 6  # meo.deploy starts at 30% of 20 columns
    assert "+30.0ms" in body[2] and "50.0ms" in body[2]
    assert "meo@mec-a" in body[2]
    assert "!" in body[1]  # error marker on offer_collection
    assert "tx_hash=0xabab" in body[3] and "block=7" in body[3] and "gas=21000" in body[3]
    assert "vni=42" in body[2]
    assert "other-trace" not in out
    assert "other-trace" in render_waterfall(spans, "cd" * 16)


# -- the collector's server ----------------------------------------------------------------


async def test_collector_health_malformed_export_and_stop() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    rx = OtlpReceiver()
    await rx.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{rx.port}") as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await export(b"\xff\xff\xff", timeout=5)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ExportTraceServiceRequest" in (bad.value.details() or "")
        await rx.stop()
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await export(b"", timeout=2)
        assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
    await rx.stop()  # idempotent
