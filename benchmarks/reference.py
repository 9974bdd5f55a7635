"""The reference paper's measurements and the issue's targets.

Source: ../shared/reference/ANCHORS.md section 1 (Besu validators, one VM
per MEC system, block period 5 s, 20 runs per N). Means in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

# N -> (Clique, QBFT, SOA) end-to-end mean seconds.
PAPER_TOTALS: dict[int, tuple[float, float, float]] = {
    2: (17.85, 17.97, 2.46),
    10: (20.14, 21.09, 3.41),
    15: (26.44, 26.63, 6.26),
    25: (27.32, 26.34, 4.51),
    30: (28.37, 30.38, 4.57),
}
PAPER_BLOCK_TIME = 5.0

# Step breakdown at N=2, Clique, mapped onto our step names.
PAPER_STEPS_N2: dict[str, float] = {
    "offer_collection": 6.44,  # bid collection
    "award": 0.27,  # winner selection
    "deployment": 9.76,  # deploy + on-chain confirmation
    "overlay": 0.31,  # VXLAN setup
    "traffic_check": 1.07,  # ping check
}

# Besu validator container: (N, vCPU, MB) endpoints the paper reports.
PAPER_CHAIN_CPU: dict[str, dict[int, float]] = {
    "Clique": {2: 0.08, 30: 0.08},  # flat
    "QBFT": {30: 0.17},  # grows with N; only the N=30 value is given
}
PAPER_CHAIN_MEM_MB: dict[int, float] = {2: 306.0, 30: 462.0}


def paper_total(backend: str, n: int) -> dict[str, float]:
    """The paper's totals comparable to one of our backends at N."""
    if n not in PAPER_TOTALS:
        return {}
    clique, qbft, soa = PAPER_TOTALS[n]
    return {"Clique": clique, "QBFT": qbft} if backend == "chain" else {"SOA": soa}


@dataclass(frozen=True)
class Target:
    backend: str
    n: int
    limit_s: float
    paper: str  # the paper's number(s), for the table


# From the issue. Chain targets assume the paper's 5 s block period.
TARGETS: tuple[Target, ...] = (
    Target("chain", 2, 9.0, "17.85 (Clique)"),
    Target("chain", 30, 11.0, "28.37 / 30.38 (Clique / QBFT)"),
    Target("direct", 2, 1.2, "2.46 (SOA)"),
    Target("direct", 30, 2.0, "4.57 (SOA)"),
)
PROVIDERS_TARGET_N = 30  # all 6 providers should win something at N=30
MEF_RSS_TARGET_MB = 80.0
