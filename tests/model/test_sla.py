"""Tests for mecfed.model.sla: the terms' bounds, the oracle's cross-check,
the quorum verdict and the settlement arithmetic (money is conserved)."""

from __future__ import annotations

import random

import pytest

from mecfed.errors import InvalidArgument
from mecfed.model.sla import (
    DEFAULT_WITHOUT_REPORT,
    PPM,
    Measurement,
    SlaTerms,
    Verdict,
    oracle_view,
    period_price,
    period_verdict,
    pro_rata,
    quorum,
    settle_period,
)

TERMS = SlaTerms(
    max_rtt_us=20_000,
    max_loss_ppm=50_000,
    min_availability_ppm=900_000,
    period_ms=2_000,
    periods=6,
    penalty_ppm=500_000,
)
GOOD = Measurement(rtt_us=1_000, loss_ppm=0, availability_ppm=PPM)
BAD = Measurement(rtt_us=1_000, loss_ppm=400_000, availability_ppm=600_000)


def test_defaults_are_valid():
    terms = SlaTerms()
    assert terms.lease_ms == terms.period_ms * terms.periods


@pytest.mark.parametrize(
    "field,value",
    [
        ("period_ms", 999),
        ("period_ms", 86_400_001),
        ("periods", 0),
        ("periods", 100_001),
        ("max_loss_ppm", -1),
        ("max_loss_ppm", PPM + 1),
        ("min_availability_ppm", PPM + 1),
        ("penalty_ppm", PPM + 1),
        ("max_rtt_us", 99),
        ("max_rtt_us", 60_000_001),
        ("periods", True),
        ("period_ms", 1500.0),
    ],
)
def test_terms_out_of_bounds_name_the_field(field, value):
    with pytest.raises(InvalidArgument) as err:
        SlaTerms(**{field: value})
    assert err.value.violations[0].field == field


def test_measurement_bounds():
    with pytest.raises(InvalidArgument, match="loss_ppm"):
        Measurement(rtt_us=0, loss_ppm=PPM + 1, availability_ppm=0)


@pytest.mark.parametrize(
    "m,violates",
    [
        (GOOD, False),
        (Measurement(20_000, 50_000, 900_000), False),  # exactly at every bound
        (Measurement(20_001, 0, PPM), True),
        (Measurement(1_000, 50_001, PPM), True),
        (Measurement(1_000, 0, 899_999), True),
        (Measurement.unreachable(), True),
    ],
)
def test_violates(m, violates):
    assert m.violates(TERMS) is violates


def test_total_loss_tolerated_only_if_the_terms_say_so():
    lax = SlaTerms(max_loss_ppm=PPM, min_availability_ppm=0)
    assert not Measurement.unreachable().violates(lax)


def test_consumer_alone_cannot_claim_a_violation():
    assert oracle_view(GOOD, consumer=BAD) == GOOD


def test_provider_alone_cannot_hide_a_violation():
    assert oracle_view(BAD, provider=GOOD) == BAD


def test_admissions_against_interest_are_believed():
    assert oracle_view(GOOD, provider=BAD).violates(TERMS)
    assert not oracle_view(BAD, consumer=GOOD).violates(TERMS)


def test_silent_parties_leave_the_oracles_own_probe():
    assert oracle_view(BAD) == BAD


def test_quorum_is_a_strict_majority_of_at_least_two():
    assert [quorum(n) for n in (0, 1, 2, 3, 4, 5, 7)] == [2, 2, 2, 2, 3, 3, 4]


def test_one_lying_oracle_changes_nothing():
    honest = [("o1", GOOD), ("o2", GOOD)]
    assert period_verdict(TERMS, [*honest, ("o3", BAD)], quorum(3)) is Verdict.COMPLIANT
    assert period_verdict(TERMS, [("o1", GOOD), ("o3", BAD)], quorum(3)) is Verdict.NO_QUORUM


def test_an_oracle_counts_once():
    assert period_verdict(TERMS, [("o3", BAD), ("o3", BAD)], 2) is Verdict.NO_QUORUM
    # its first report is the one that counts
    assert period_verdict(TERMS, [("o1", BAD), ("o2", BAD), ("o2", GOOD)], 2) is Verdict.VIOLATED


def test_a_quorum_below_two_is_refused():
    with pytest.raises(InvalidArgument, match="quorum"):
        period_verdict(TERMS, [("o1", BAD)], 1)


def test_violated_period_refunds_the_penalty():
    s = settle_period(600, TERMS, 2, Verdict.VIOLATED)
    assert (s.to_provider, s.to_consumer) == (50, 50)
    assert settle_period(600, TERMS, 2, Verdict.COMPLIANT).to_provider == 100


def test_no_report_is_settled_by_the_documented_default():
    assert DEFAULT_WITHOUT_REPORT is Verdict.COMPLIANT
    s = settle_period(600, TERMS, 0, Verdict.NO_QUORUM)
    assert (s.to_provider, s.to_consumer) == (100, 0)


def test_remainder_goes_to_the_last_period():
    assert [period_price(605, TERMS, p) for p in range(6)] == [100] * 5 + [105]
    with pytest.raises(InvalidArgument, match="period"):
        period_price(605, TERMS, 6)


def test_pro_rata_in_the_middle_of_a_period():
    # 2.5 periods in: period 2 half earned; periods 3..5 refunded whole.
    assert pro_rata(600, TERMS, 0, 5_000) == (50, 50 + 300)
    assert pro_rata(600, TERMS, 0, TERMS.lease_ms) == (0, 0)
    assert pro_rata(600, TERMS, 1_000, 0) == (0, 600)  # before the start: all back


@pytest.mark.parametrize("seed", range(200))
def test_money_is_conserved(seed):
    rng = random.Random(seed)
    price = rng.choice([0, 1, 7, 10**6, rng.randrange(10**24)])
    periods = rng.randint(1, 50)
    terms = SlaTerms(period_ms=1_000, periods=periods, penalty_ppm=rng.randint(0, PPM))
    verdicts = [rng.choice(list(Verdict)) for _ in range(periods)]
    whole = [settle_period(price, terms, p, verdicts[p]) for p in range(periods)]
    assert all(s.to_provider >= 0 and s.to_consumer >= 0 for s in whole)
    assert sum(s.to_provider + s.to_consumer for s in whole) == price
    # Terminated at `end`: periods before it settled, the current one pro rata.
    end = rng.randint(0, periods * 1_000 + 500)
    earned, refund = pro_rata(price, terms, 0, end)
    assert earned >= 0 and refund >= 0
    before = whole[: max(terms.period_of(0, end), 0)]
    assert sum(s.to_provider + s.to_consumer for s in before) + earned + refund == price
