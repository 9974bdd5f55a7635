"""``mecfed bench``: repeatable federation benchmarks against the paper.

Modules: ``reference`` (the paper's numbers and the issue's targets),
``traces`` (step durations from OTLP spans), ``sampler`` (per-process CPU and
memory), ``runner`` (testbed points and runs), ``report`` (CSV, summary.md,
machine.md), ``plots`` (Fig. 5 / Fig. 6 style PNGs), ``cli`` (options).
"""

from __future__ import annotations

__all__ = ["STEPS", "SYSTEMS"]

# Workflow steps in order; the span names the MEF emits under ``federation``.
STEPS: tuple[str, ...] = ("offer_collection", "award", "deployment", "overlay", "traffic_check")
# The paper's scenarios: N MEC systems, split 80:20 consumers:providers.
SYSTEMS: tuple[int, ...] = (2, 10, 15, 25, 30)
