"""Terminal waterfall of one trace, from flattened span dicts.

Span dicts are those of :mod:`mecfed.cli.collector` (also what ``load_jsonl`` reads
back): trace_id, span_id, parent_span_id, name, start_ns, end_ns, status,
attributes, resource / service_name. Plain text output, so it works in logs,
CI and under ``rich`` alike.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SpanDict = dict[str, Any]

#: Where ``mecfed demo`` collects spans (without an OTLP endpoint of its own)
#: and what ``mecfed trace`` reads by default.
TRACE_FILE = Path("/var/lib/mecfed/traces/spans.jsonl")

# Attribute (last dotted component) shown in the summary column, in this
# order: what one looks at when comparing chain and direct federation.
SUMMARY_KEYS = (
    "federation_id",
    "offer_id",
    "provider",
    "tx_hash",
    "block",
    "block_number",
    "gas",
    "gas_used",
    "price",
    "vni",
    "loss",
    "rtt",
    "rtt_ms",
    "app",
    "result",
)
NAME_WIDTH_MAX = 48


def spans_to_jsonl(spans: Iterable[SpanDict], path: str | Path | None = None) -> str:
    """JSON lines text of ``spans``; also written to ``path`` when given."""
    text = "".join(json.dumps(s, sort_keys=True) + "\n" for s in spans)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def load_jsonl(path: str | Path) -> list[SpanDict]:
    """Spans from a JSONL file; a truncated last line (writer killed) is skipped."""
    spans: list[SpanDict] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            spans.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return spans


def trace_ids(spans: Iterable[SpanDict]) -> list[str]:
    """Distinct trace ids, earliest-starting trace first."""
    first: dict[str, int] = {}
    for s in spans:
        first[s["trace_id"]] = min(first.get(s["trace_id"], s["start_ns"]), s["start_ns"])
    return sorted(first, key=first.__getitem__)


def find_traces(spans: Iterable[SpanDict], key: str, value: Any) -> list[str]:
    """Ids of traces having a span whose attribute ``key`` (exact, or as last
    dotted component, e.g. 'federation_id' matches 'mecfed.federation_id')
    equals ``value`` — how ``mecfed trace FEDERATION_ID`` picks its trace."""
    spans = list(spans)
    hits = {
        s["trace_id"]
        for s in spans
        for k, v in s.get("attributes", {}).items()
        if (k == key or k.rsplit(".", 1)[-1] == key) and v == value
    }
    return [t for t in trace_ids(spans) if t in hits]


def _service(span: SpanDict) -> str:
    res = span.get("resource", {})
    name = span.get("service_name") or res.get("service.name", "?")
    system = res.get("mecfed.system_id")
    return f"{name}@{system}" if system else name


def _fmt_ms(ns: float) -> str:
    ms = ns / 1e6
    if ms >= 10_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms:.1f}ms" if ms < 1000 else f"{ms:.0f}ms"


def _short(value: Any) -> str:
    text = str(value)
    if text.startswith("0x") and len(text) > 14:  # tx hashes, addresses
        return f"{text[:8]}…{text[-4:]}"
    return text if len(text) <= 24 else text[:23] + "…"


def summarize(attributes: dict[str, Any]) -> str:
    by_leaf = {k.rsplit(".", 1)[-1]: v for k, v in attributes.items()}
    parts = [f"{k}={_short(by_leaf[k])}" for k in SUMMARY_KEYS if k in by_leaf]
    return " ".join(parts)


def _bar(start: int, end: int, t0: int, total: int, width: int, ascii_only: bool) -> str:
    scale = width / total if total > 0 else 0.0
    left = min(width - 1, int((start - t0) * scale))
    length = max(1, round((end - start) * scale))
    length = min(length, width - left)
    fill, empty = ("#", ".") if ascii_only else ("█", "·")
    return empty * left + fill * length + empty * (width - left - length)


def _order(spans: Sequence[SpanDict]) -> list[tuple[int, SpanDict]]:
    """Depth-first (depth, span) order: children sorted by start time. A span
    whose parent was not received (lost, or still in flight) is shown as a
    root so nothing silently disappears."""
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[SpanDict]] = defaultdict(list)
    roots: list[SpanDict] = []
    for s in spans:
        parent = s.get("parent_span_id") or ""
        if parent and parent in ids and parent != s["span_id"]:
            children[parent].append(s)
        else:
            roots.append(s)
    out: list[tuple[int, SpanDict]] = []
    seen: set[str] = set()

    def walk(span: SpanDict, depth: int) -> None:
        if span["span_id"] in seen:  # guards against malformed cycles
            return
        seen.add(span["span_id"])
        out.append((depth, span))
        for child in sorted(children[span["span_id"]], key=lambda c: c["start_ns"]):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda r: r["start_ns"]):
        walk(root, 0)
    return out


def render_waterfall(
    spans: Iterable[SpanDict],
    trace_id: str | None = None,
    *,
    width: int = 40,
    ascii_only: bool = False,
) -> str:
    """Waterfall of trace ``trace_id`` (default: the trace with the most
    spans). One line per span: offset from the trace start, duration,
    service[@system], indented span name, a bar scaled to the trace's span,
    and a summary of notable attributes; '!' marks spans with ERROR status."""
    spans = list(spans)
    if not spans:
        return "(no spans)\n"
    if trace_id is None:
        counts: dict[str, int] = defaultdict(int)
        for s in spans:
            counts[s["trace_id"]] += 1
        order = trace_ids(spans)
        trace_id = max(order, key=lambda t: (counts[t], -order.index(t)))
    selected = [s for s in spans if s["trace_id"] == trace_id]
    if not selected:
        return f"(no spans for trace {trace_id})\n"
    t0 = min(s["start_ns"] for s in selected)
    t1 = max(s["end_ns"] for s in selected)
    total = max(t1 - t0, 1)
    rows = _order(selected)
    services = sorted({_service(s) for s in selected})
    svc_w = max(len(x) for x in services)
    name_w = min(NAME_WIDTH_MAX, max(2 * d + len(s["name"]) + 2 for d, s in rows))
    lines = [
        f"trace {trace_id}  {len(selected)} spans  {len(services)} services  {_fmt_ms(total)}",
        f"{'START':>9} {'DUR':>9}  {'SERVICE':<{svc_w}}  {'SPAN':<{name_w}}"
        f" {'':<{width}}  ATTRIBUTES",
    ]
    for depth, s in rows:
        mark = "!" if s.get("status") == "ERROR" else " "
        label = ("  " * depth + s["name"])[: name_w - 2]
        summary = summarize(s.get("attributes", {}))
        if s.get("status") == "ERROR" and s.get("status_message"):
            summary = (summary + " error=" + _short(s["status_message"])).strip()
        lines.append(
            f"{'+' + _fmt_ms(s['start_ns'] - t0):>9} {_fmt_ms(s['end_ns'] - s['start_ns']):>9}"
            f"  {_service(s):<{svc_w}}  {mark}{label:<{name_w - 1}}"
            f"|{_bar(s['start_ns'], s['end_ns'], t0, total, width, ascii_only)}|"
            f" {summary}".rstrip()
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mecfed.cli.trace_view SPANS.jsonl [TRACE_ID | FEDERATION_ID]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mecfed.cli.trace_view", description=main.__doc__)
    ap.add_argument("jsonl")
    ap.add_argument("select", nargs="?", help="trace id or federation id")
    ap.add_argument("--ascii", action="store_true")
    args = ap.parse_args(argv)
    spans = load_jsonl(args.jsonl)
    trace_id = None
    if args.select:
        if args.select in trace_ids(spans):
            trace_id = args.select
        else:
            found = find_traces(spans, "federation_id", args.select)
            if not found:
                print(f"no trace with id or federation_id {args.select}")
                return 1
            trace_id = found[-1]
    print(render_waterfall(spans, trace_id, ascii_only=args.ascii), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
