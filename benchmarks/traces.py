"""Per-step durations of a federation, from the spans the MEFs export."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from benchmarks import STEPS
from mecfed.cli.collector import SpanCollector

SpanDict = dict[str, Any]


def federation_roots(spans: Iterable[SpanDict], ids: set[str]) -> dict[str, SpanDict]:
    """federation_id -> its root ``federation`` span (the last one seen wins:
    a span is exported once, so duplicates only come from a re-sent batch)."""
    return {
        s["attributes"]["federation_id"]: s
        for s in spans
        if s["name"] == "federation" and s["attributes"].get("federation_id") in ids
    }


def step_seconds(spans: Iterable[SpanDict], root: SpanDict) -> dict[str, float]:
    """Durations of the step spans directly under ``root``; a step that ran
    more than once (an award retried with the next offer) is summed."""
    out: dict[str, float] = {}
    for s in spans:
        if s["parent_span_id"] == root["span_id"] and s["name"] in STEPS:
            out[s["name"]] = out.get(s["name"], 0.0) + (s["end_ns"] - s["start_ns"]) / 1e9
    return out


async def wait_for_roots(
    collector: SpanCollector, ids: set[str], timeout: float
) -> dict[str, SpanDict]:
    """Waits (bounded) until every federation's root span has arrived; the
    MEFs' batch processor flushes every 200 ms, so this is normally quick.
    Returns what arrived either way: a missing trace leaves steps empty."""
    try:
        await collector.wait_for(lambda s: len(federation_roots(s, ids)) >= len(ids), timeout)
    except TimeoutError:
        pass
    # The step spans end before their parent, so they are in the same or an
    # earlier batch; one more flush interval covers a batch boundary.
    await asyncio.sleep(0.3)
    return federation_roots(collector.spans, ids)
