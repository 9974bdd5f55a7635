"""Runtime liveness after ESTABLISHED: DEGRADED and back with reasons and
timestamps in the history, one span per transition in the federation's
trace. Fakes only."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.mef.consumer_support import S, established, make, reach, states, until


async def test_liveness_degrades_and_recovers_with_reasons_and_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    workflow, _, meo = make(tracer=provider.get_tracer("test"))
    fed = await established(workflow)
    fid = fed.federation_id
    await until(lambda: workflow.store.get(fid).liveness is not None)
    meo.lose_traffic = True
    degraded = await reach(workflow, fid, S.DEGRADED)
    assert "10/20 echoes answered (50% loss)" in degraded.history[-1].reason
    assert degraded.liveness is not None and degraded.liveness.loss == 0.5
    meo.lose_traffic = False
    back = await reach(workflow, fid, S.ESTABLISHED)
    assert states(back)[-3:] == [S.ESTABLISHED, S.DEGRADED, S.ESTABLISHED]
    assert back.history[-1].reason.startswith("traffic passes")
    assert back.history[-2].at <= back.history[-1].at
    await workflow.close()
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "federation")
    liveness = [s for s in spans if s.name == "liveness"]
    # One span per transition, in the federation's trace.
    assert [s.attributes["state"] for s in liveness] == ["DEGRADED", "ESTABLISHED"]
    assert {s.context.trace_id for s in liveness} == {root.context.trace_id}
    assert liveness[0].attributes["loss"] == 0.5


async def test_a_broken_liveness_stream_degrades_then_reconnects():
    workflow, _, meo = make()
    fed = await established(workflow)
    meo.break_watch = True
    degraded = await reach(workflow, fed.federation_id, S.DEGRADED)
    assert "liveness stream failed" in degraded.history[-1].reason
    meo.break_watch = False
    await reach(workflow, fed.federation_id, S.ESTABLISHED)
    assert meo.watches.count(fed.federation_id) >= 2
    await workflow.close()


async def test_liveness_off():
    workflow, transport, meo = make(liveness_period_ms=0)
    fed = await established(workflow)
    await asyncio.sleep(0.05)
    assert meo.watches == [] and workflow.store.get(fed.federation_id).liveness is None
    assert transport.established_calls == [fed.federation_id]
    await workflow.close()


async def test_every_transition_is_a_span_event_in_the_federations_trace():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    workflow, _, _ = make(tracer=provider.get_tracer("test"), liveness_period_ms=0)
    fed = await established(workflow)
    await workflow.terminate(fed.federation_id)
    await workflow.close()
    spans = exporter.get_finished_spans()
    trace_ids = {s.context.trace_id for s in spans}
    assert len(trace_ids) == 1  # the run, its steps and the termination
    events = [e.attributes["state"] for s in spans for e in s.events if e.name == "state"]
    assert events[0] == "COLLECTING_OFFERS" and "ESTABLISHED" in events
    terminate = next(s for s in spans if s.name == "terminate")
    assert terminate.parent is not None
