"""Tests for mecfed.model.pricing: tariff model, offer policy, seeded
policies. (Moved from tests/mef/test_pricing.py; the policy's proto/JSON
conversion is tested in tests/wire/test_federator.py, the capacity ledger in
tests/mef/test_capacity.py.)"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mecfed.errors import InvalidArgument
from mecfed.model.checks import MAX_PRICE
from mecfed.model.pricing import (
    TARIFFS,
    TIME_OF_DAY_FACTOR,
    FixedPricing,
    OfferPolicy,
    TariffPricing,
    load_factor,
    local_hour,
    seeded_policies,
)


def at_utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


# --- tables ---------------------------------------------------------------


def test_tariff_table_is_sane() -> None:
    assert len(TARIFFS) >= 8
    for code, t in TARIFFS.items():
        assert code == t.region and len(code) == 2 and code.isupper()
        assert 20 <= t.eur_per_mwh <= 500
        assert -720 <= t.utc_offset_minutes <= 840


def test_time_of_day_table() -> None:
    assert len(TIME_OF_DAY_FACTOR) == 24
    assert TIME_OF_DAY_FACTOR[3] == 0.70
    assert TIME_OF_DAY_FACTOR[12] == 1.00
    assert TIME_OF_DAY_FACTOR[19] == 1.30
    assert min(TIME_OF_DAY_FACTOR) == 0.70 and max(TIME_OF_DAY_FACTOR) == 1.30


def test_local_hour() -> None:
    assert local_hour(at_utc(23, 30), 60) == 0
    assert local_hour(at_utc(0, 15), -60) == 23
    assert local_hour(at_utc(12), 330) == 17  # India, half-hour offset
    # The input's own time zone does not matter, only the instant.
    plus2 = datetime(2026, 3, 2, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert local_hour(plus2, 0) == 12
    with pytest.raises(ValueError, match="timezone-aware"):
        local_hour(datetime(2026, 1, 1), 0)


def test_load_factor() -> None:
    assert load_factor(1.0, 0.0) == 1.0
    assert load_factor(1.0, 0.5) == pytest.approx(2.0)
    assert load_factor(1.0, 0.75) == pytest.approx(4.0)
    assert load_factor(1.0, 0.9) == pytest.approx(10.0)
    assert load_factor(1.0, 5.0) == pytest.approx(10.0)  # capped at 90 %
    assert load_factor(1.0, -5.0) == 1.0
    assert load_factor(0.0, 0.9) == 1.0


# --- quotes ---------------------------------------------------------------


def test_tariff_formula_values() -> None:
    # ES: 120 EUR/MWh, UTC+1. 150 Wh x 2 replicas = 300 Wh -> 36_000 uEUR/h base.
    p = TariffPricing("ES", watt_hours_per_replica=150, load_sensitivity=1.0)
    assert p.utc_offset_minutes == 60
    assert p.quote(2, 0.0, at_utc(11)) == 36_000  # 12:00 local, day x1.0
    assert p.quote(2, 0.0, at_utc(2)) == 25_200  # 03:00 local, night x0.7
    assert p.quote(2, 0.0, at_utc(18)) == 46_800  # 19:00 local, peak x1.3
    assert p.quote(2, 0.5, at_utc(11)) == 72_000  # load factor 1 + 0.5 / 0.5
    assert p.quote(2, 1.0, at_utc(18)) == 468_000  # 1.3 x (1 + 0.9 / 0.1)


def test_factors() -> None:
    p = TariffPricing("ES", load_sensitivity=1.0)
    tod, load = p.factors(0.5, at_utc(18))
    assert tod == 1.30 and load == pytest.approx(2.0)
    assert p.tariff == TARIFFS["ES"]


def test_tariff_regions_and_offsets_differ() -> None:
    now = at_utc(17)  # 18:00 in DE (peak), 17:00 in PT (day)
    de = TariffPricing("DE", 100, load_sensitivity=0)
    pt = TariffPricing("PT", 100, load_sensitivity=0)
    assert de.quote(1, 0, now) == round(200 * 100 * 1.3)
    assert pt.quote(1, 0, now) == 125 * 100
    shifted = TariffPricing("DE", 100, utc_offset_minutes=0, load_sensitivity=0)
    assert shifted.quote(1, 0, now) == 200 * 100


def test_load_factor_is_monotonic_and_bounded() -> None:
    p = TariffPricing("FR", 150, load_sensitivity=2.0)
    loads = [i / 10 for i in range(11)]
    prices = [p.quote(4, load, at_utc(11)) for load in loads]
    assert prices == sorted(prices) and prices[0] < prices[-1]
    assert prices[-1] == 19 * prices[0]  # 1 + 2.0 x 0.9 / 0.1 (capped at 90 %)
    assert prices[5] == 3 * prices[0]  # half capacity: 1 + 2.0
    # Out-of-range loads are clamped, never extrapolated.
    assert p.quote(4, 7.0, at_utc(11)) == prices[-1]
    assert p.quote(4, -1.0, at_utc(11)) == prices[0]


def test_quote_with_nan_load_is_a_price_or_a_domain_error() -> None:
    # A load computed elsewhere is clamped "so it can never push the factor
    # past its documented maximum"; NaN must not escape as a bare ValueError
    # (the servicer would answer INTERNAL) nor yield an unbounded price.
    p = TariffPricing("FR", 150, load_sensitivity=2.0)
    try:
        price = p.quote(4, math.nan, at_utc(11))
    except InvalidArgument:
        return
    assert p.quote(4, 0.0, at_utc(11)) <= price <= p.quote(4, 1.0, at_utc(11))


def test_zero_sensitivity_ignores_load() -> None:
    p = TariffPricing("SE", 150, load_sensitivity=0)
    assert p.quote(1, 0, at_utc(11)) == p.quote(1, 1, at_utc(11))


def test_quote_is_always_positive_integer_and_capped() -> None:
    tiny = TariffPricing("SE", 1, load_sensitivity=0)
    q = tiny.quote(1, 0, at_utc(1))  # 85 x 1 x 0.7 = 59.5 -> 60
    assert isinstance(q, int) and q >= 1
    huge = TariffPricing("DE", 100_000, load_sensitivity=10)
    assert 1 <= huge.quote(10**9, 1, at_utc(18)) <= MAX_PRICE
    assert huge.quote(10**9, 1, at_utc(18)) == MAX_PRICE


def test_quote_rejects_bad_replicas() -> None:
    with pytest.raises(InvalidArgument, match="replicas is 0"):
        TariffPricing("ES").quote(0, 0, at_utc(0))
    with pytest.raises(InvalidArgument, match="replicas"):
        FixedPricing(5).quote(-1, 0, at_utc(0))
    with pytest.raises(InvalidArgument, match="replicas is 0"):
        OfferPolicy.default().quote(0, 0, at_utc(0))


def test_quote_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TariffPricing("ES").quote(1, 0, datetime(2026, 1, 1))


def test_fixed_pricing_ignores_everything() -> None:
    p = FixedPricing(1234)
    assert {p.quote(r, load, at_utc(h)) for r in (1, 8) for load in (0, 1) for h in (3, 19)} == {
        1234
    }


# --- validation -------------------------------------------------------------

# Paths are relative to the policy; policy_from_proto/json prefix "policy."
# (tests/wire/test_federator.py).


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FixedPricing(0), "^fixed.price must be greater than 0$"),
        (lambda: FixedPricing(-1), "^fixed.price must be greater than 0$"),
        (lambda: FixedPricing(MAX_PRICE + 1), f"^fixed.price is {MAX_PRICE + 1}, which is absurd"),
        (lambda: TariffPricing("XX"), "^tariff.region 'XX' is unknown; known regions: DE, "),
        (lambda: TariffPricing(""), "^tariff.region '' is unknown"),
        (lambda: TariffPricing("ES", 0), "^tariff.watt_hours_per_replica is 0"),
        (lambda: TariffPricing("ES", 100_001), "^tariff.watt_hours_per_replica is 100001"),
        (lambda: TariffPricing("ES", 1, -721), "^tariff.utc_offset_minutes is -721"),
        (lambda: TariffPricing("ES", 1, 841), "^tariff.utc_offset_minutes is 841"),
        (lambda: TariffPricing("ES", 1, 0, -0.1), "^tariff.load_sensitivity is -0.1"),
        (lambda: TariffPricing("ES", 1, 0, 10.5), "^tariff.load_sensitivity is 10.5"),
        (lambda: TariffPricing("ES", 1, 0, math.nan), "^tariff.load_sensitivity is nan"),
        (lambda: TariffPricing("ES", 1, 0, math.inf), "^tariff.load_sensitivity is inf"),
        (
            lambda: OfferPolicy(FixedPricing(1), capacity_replicas=10_001),
            "^capacity_replicas is 10001",
        ),
        (
            lambda: OfferPolicy(FixedPricing(1), capacity_replicas=-1),
            "^capacity_replicas is -1",
        ),
        (
            lambda: OfferPolicy(FixedPricing(1), offer_validity_ms=0),
            "^offer_validity_ms is 0",
        ),
        (
            lambda: OfferPolicy(FixedPricing(1), offer_validity_ms=3_600_001),
            "^offer_validity_ms is 3600001",
        ),
        (lambda: OfferPolicy(None), "^pricing one of fixed or tariff"),  # type: ignore[arg-type]
    ],
)
def test_validation_errors(make, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        make()
    assert len(info.value.violations) == 1
    assert info.value.message.startswith(info.value.violations[0].field)


def test_long_unknown_region_is_shortened() -> None:
    with pytest.raises(InvalidArgument) as info:
        TariffPricing("Z" * 1000)
    assert len(info.value.message) < 200


def test_validation_limits_are_inclusive() -> None:
    FixedPricing(1)
    FixedPricing(MAX_PRICE)
    TariffPricing("es", 1, -720, 0)
    TariffPricing("ES", 100_000, 840, 10)
    OfferPolicy(FixedPricing(1), capacity_replicas=0, offer_validity_ms=1)
    OfferPolicy(FixedPricing(1), capacity_replicas=10_000, offer_validity_ms=3_600_000)


def test_region_is_case_insensitive() -> None:
    assert TariffPricing("de").region == "DE"
    assert TariffPricing("de") == TariffPricing("DE")


def test_region_offset_default() -> None:
    for region, tariff in TARIFFS.items():
        assert TariffPricing(region).utc_offset_minutes == tariff.utc_offset_minutes
    assert TariffPricing("GR", utc_offset_minutes=0).utc_offset_minutes == 0


# --- OfferPolicy -------------------------------------------------------------


def test_default_policy() -> None:
    p = OfferPolicy.default()
    assert isinstance(p.pricing, TariffPricing)
    assert p.pricing == TariffPricing("ES")
    assert (p.capacity_replicas, p.offer_validity_ms) == (32, 60_000)
    assert p.makes_offers
    assert p.quote(1, 0, at_utc(11)) > 0
    assert p.offer_validity == timedelta(milliseconds=p.offer_validity_ms) == timedelta(seconds=60)


def test_zero_capacity_makes_no_offers() -> None:
    assert not OfferPolicy(FixedPricing(1), capacity_replicas=0).makes_offers


def test_policy_quote_delegates() -> None:
    assert OfferPolicy(FixedPricing(77)).quote(3, 0.5, at_utc(4)) == 77


# --- seeded policies --------------------------------------------------------


def test_seeded_policies_are_deterministic() -> None:
    assert seeded_policies(20, seed=7) == seeded_policies(20, seed=7)
    assert seeded_policies(20, seed=7) != seeded_policies(20, seed=8)


def test_seeded_policies_round_robin_regions() -> None:
    policies = seeded_policies(16, seed=3)
    regions = [p.pricing.region for p in policies]  # type: ignore[union-attr]
    assert sorted(regions[:8]) == sorted(TARIFFS)
    assert regions[8:] == regions[:8]
    for p in policies:
        t = p.pricing
        assert isinstance(t, TariffPricing)
        assert t.utc_offset_minutes == TARIFFS[t.region].utc_offset_minutes
        assert 135 <= t.watt_hours_per_replica <= 165


def test_seeded_policies_options_and_bounds() -> None:
    assert seeded_policies(0, seed=1) == []
    p = seeded_policies(1, seed=1, capacity_replicas=5, offer_validity_ms=10, load_sensitivity=0)
    assert p[0].capacity_replicas == 5 and p[0].offer_validity_ms == 10
    assert p[0].pricing.load_sensitivity == 0  # type: ignore[union-attr]
    with pytest.raises(InvalidArgument, match="n_providers"):
        seeded_policies(-1, seed=1)
    # The energy jitter never leaves the model's bounds.
    for q in seeded_policies(20, seed=1, watt_hours_per_replica=1):
        assert q.pricing.watt_hours_per_replica == 1  # type: ignore[union-attr]
    for q in seeded_policies(20, seed=1, watt_hours_per_replica=100_000):
        assert 90_000 <= q.pricing.watt_hours_per_replica <= 100_000  # type: ignore[union-attr]
