"""Service-level terms of a federation and the rules that settle them
(issue 11: the federation as a dynamic SLA).

This module is the one statement of the rules; the chain contract and the
direct backend's settlement record apply the same ones:

* **Terms** (:class:`SlaTerms`): per measurement period a max RTT, a max
  loss and a min availability, the period length, the lease (number of
  periods) and the penalty (share of a period's price refunded when the
  period is violated). Integers only (microseconds, parts per million), so
  the contract evaluates exactly what Python evaluates.
* **One oracle's view** (:func:`oracle_view`): an oracle probes the service
  itself and receives both parties' signed reports. Its own probe decides;
  a party's report is believed only where it is an admission against that
  party's interest (the provider admitting worse service, the consumer
  admitting better). A claim in one's own favour needs independent evidence,
  so neither party alone can move money.
* **The verdict of a period** (:func:`period_verdict`): a period is violated
  when at least ``quorum`` distinct oracles' reports violate the terms, and
  compliant when at least ``quorum`` comply; otherwise there is no verdict
  (the submitter must bring more reports). With ``quorum > n / 2`` the two
  cannot both happen, and one lying oracle alone decides nothing.
* **Amounts** (:func:`settle_period`, :func:`pro_rata`): the lease price is
  split evenly over the periods (the remainder goes to the last period); a
  violated period pays the provider the price less the penalty and refunds
  the penalty to the consumer. A period with no verdict within its report
  window is settled by :data:`DEFAULT_WITHOUT_REPORT` (paid to the provider:
  no evidence of a violation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from mecfed.errors import InvalidArgument

PPM = 1_000_000

# Bounds of the terms. Periods shorter than a second cannot be measured with
# a probe series; a lease beyond 10^5 periods is a typo, not a request.
MIN_PERIOD_MS, MAX_PERIOD_MS = 1_000, 86_400_000
MAX_PERIODS = 100_000
MIN_RTT_US, MAX_RTT_US = 100, 60_000_000
MAX_PENALTY_PPM = PPM

# Defaults (documented in the README): 10 s periods for one hour, 50 ms RTT,
# 1 % loss, 99 % availability, half the period's price refunded on a violation.
DEFAULT_PERIOD_MS = 10_000
DEFAULT_PERIODS = 360
DEFAULT_MAX_RTT_US = 50_000
DEFAULT_MAX_LOSS_PPM = 10_000
DEFAULT_MIN_AVAILABILITY_PPM = 990_000
DEFAULT_PENALTY_PPM = 500_000

MIN_QUORUM = 2  # one oracle alone never decides


def _bounded(name: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument.field(name, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidArgument.field(name, f"must be within [{lo}, {hi}], got {value}")


@dataclass(frozen=True)
class SlaTerms:
    max_rtt_us: int = DEFAULT_MAX_RTT_US
    max_loss_ppm: int = DEFAULT_MAX_LOSS_PPM
    min_availability_ppm: int = DEFAULT_MIN_AVAILABILITY_PPM
    period_ms: int = DEFAULT_PERIOD_MS
    periods: int = DEFAULT_PERIODS
    penalty_ppm: int = DEFAULT_PENALTY_PPM

    def __post_init__(self) -> None:
        _bounded("max_rtt_us", self.max_rtt_us, MIN_RTT_US, MAX_RTT_US)
        _bounded("max_loss_ppm", self.max_loss_ppm, 0, PPM)
        _bounded("min_availability_ppm", self.min_availability_ppm, 0, PPM)
        _bounded("period_ms", self.period_ms, MIN_PERIOD_MS, MAX_PERIOD_MS)
        _bounded("periods", self.periods, 1, MAX_PERIODS)
        _bounded("penalty_ppm", self.penalty_ppm, 0, MAX_PENALTY_PPM)

    @property
    def lease_ms(self) -> int:
        return self.period_ms * self.periods

    def period_of(self, start_ms: int, now_ms: int) -> int:
        """The period ``now_ms`` falls in (``periods`` once the lease is over,
        -1 before it starts)."""
        if now_ms < start_ms:
            return -1
        return min((now_ms - start_ms) // self.period_ms, self.periods)


@dataclass(frozen=True)
class Measurement:
    """One period's QoS as seen by one observer: mean RTT of the answered
    probes, share of probes lost, share of sub-intervals with an answer."""

    rtt_us: int
    loss_ppm: int
    availability_ppm: int

    def __post_init__(self) -> None:
        _bounded("rtt_us", self.rtt_us, 0, 2**32 - 1)
        _bounded("loss_ppm", self.loss_ppm, 0, PPM)
        _bounded("availability_ppm", self.availability_ppm, 0, PPM)

    @staticmethod
    def unreachable() -> Measurement:
        return Measurement(rtt_us=0, loss_ppm=PPM, availability_ppm=0)

    def violates(self, terms: SlaTerms) -> bool:
        if self.availability_ppm < terms.min_availability_ppm:
            return True
        if self.loss_ppm > terms.max_loss_ppm:
            return True
        # Nothing answered: no RTT to judge, but the loss already violates
        # unless the terms tolerate total loss.
        return self.loss_ppm < PPM and self.rtt_us > terms.max_rtt_us


def oracle_view(
    own: Measurement,
    consumer: Measurement | None = None,
    provider: Measurement | None = None,
) -> Measurement:
    """What one oracle reports for a period (see the module docstring):
    its own probe, made worse by the provider's admissions (it reports its
    replicas less available, or worse loss/RTT, than the probe saw) and
    better by the consumer's (it reports the service better than the probe
    saw). Either party's report may be missing (silent party)."""
    rtt, loss, avail = own.rtt_us, own.loss_ppm, own.availability_ppm
    if provider is not None:
        rtt = max(rtt, provider.rtt_us)
        loss = max(loss, provider.loss_ppm)
        avail = min(avail, provider.availability_ppm)
    if consumer is not None:
        # Only where the consumer admits *better* service than observed;
        # an RTT of 0 from a consumer whose probes all failed says nothing.
        if consumer.loss_ppm < PPM:
            rtt = min(rtt, consumer.rtt_us) if rtt else consumer.rtt_us
        loss = min(loss, consumer.loss_ppm)
        avail = max(avail, consumer.availability_ppm)
    return Measurement(rtt_us=rtt, loss_ppm=loss, availability_ppm=avail)


class Verdict(Enum):
    COMPLIANT = "compliant"
    VIOLATED = "violated"
    NO_QUORUM = "no_quorum"


def quorum(oracles: int) -> int:
    """Signatures needed among ``oracles`` registered ones: a strict
    majority, and never fewer than two."""
    return max(MIN_QUORUM, oracles // 2 + 1)


def period_verdict(
    terms: SlaTerms, reports: Sequence[tuple[str, Measurement]], needed: int
) -> Verdict:
    """``reports`` are (oracle id, its measurement) of one period; an
    oracle counts once (its first report), whatever it sent."""
    if needed < MIN_QUORUM:
        raise InvalidArgument.field("quorum", f"must be at least {MIN_QUORUM}, got {needed}")
    seen: set[str] = set()
    violated = compliant = 0
    for oracle, measurement in reports:
        if oracle in seen:
            continue
        seen.add(oracle)
        if measurement.violates(terms):
            violated += 1
        else:
            compliant += 1
    if violated >= needed:
        return Verdict.VIOLATED
    if compliant >= needed:
        return Verdict.COMPLIANT
    return Verdict.NO_QUORUM


#: How a period with no verdict within its report window is settled.
DEFAULT_WITHOUT_REPORT = Verdict.COMPLIANT


def period_price(lease_price: int, terms: SlaTerms, period: int) -> int:
    """The share of ``lease_price`` earned by ``period`` (0-based): equal
    shares, the remainder of the division in the last period."""
    _bounded("period", period, 0, terms.periods - 1)
    share = lease_price // terms.periods
    if period == terms.periods - 1:
        return lease_price - share * (terms.periods - 1)
    return share


@dataclass(frozen=True)
class PeriodSettlement:
    period: int
    verdict: Verdict
    to_provider: int
    to_consumer: int


def settle_period(
    lease_price: int, terms: SlaTerms, period: int, verdict: Verdict
) -> PeriodSettlement:
    """Who gets the period's price. ``NO_QUORUM`` is settled by
    :data:`DEFAULT_WITHOUT_REPORT` (call this only once the report window
    has passed)."""
    price = period_price(lease_price, terms, period)
    effective = DEFAULT_WITHOUT_REPORT if verdict is Verdict.NO_QUORUM else verdict
    if effective is Verdict.VIOLATED:
        penalty = price * terms.penalty_ppm // PPM
        return PeriodSettlement(period, verdict, price - penalty, penalty)
    return PeriodSettlement(period, verdict, price, 0)


def pro_rata(lease_price: int, terms: SlaTerms, start_ms: int, end_ms: int) -> tuple[int, int]:
    """Early termination at ``end_ms``: (provider's share of the period in
    progress, refund to the consumer of that period's rest and of every
    later period). Periods already over are settled by their verdicts."""
    current = terms.period_of(start_ms, end_ms)
    if current >= terms.periods:
        return 0, 0
    current = max(current, 0)
    price = period_price(lease_price, terms, current)
    into = max(0, end_ms - start_ms - current * terms.period_ms)
    earned = price * into // terms.period_ms
    # Every period after the current one: the lease less periods 0..current.
    later = lease_price - (lease_price // terms.periods) * current - price
    return earned, price - earned + later


__all__ = [
    "DEFAULT_WITHOUT_REPORT",
    "Measurement",
    "PeriodSettlement",
    "SlaTerms",
    "Verdict",
    "oracle_view",
    "period_price",
    "period_verdict",
    "pro_rata",
    "quorum",
    "settle_period",
]
