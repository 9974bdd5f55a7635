"""Tests for mef.pricing: tariff model, offer policy, capacity ledger."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mecfed.errors import InvalidArgument, ResourceExhausted
from mecfed.v1 import federator_pb2
from mecfed.validation import MAX_PRICE
from mef.pricing import (
    TARIFFS,
    TIME_OF_DAY_FACTOR,
    CapacityLedger,
    FixedPricing,
    OfferPolicy,
    TariffPricing,
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


def test_zero_sensitivity_ignores_load() -> None:
    p = TariffPricing("SE", 150, load_sensitivity=0)
    assert p.quote(1, 0, at_utc(11)) == p.quote(1, 1, at_utc(11))


def test_quote_is_always_positive_integer_and_capped() -> None:
    tiny = TariffPricing("SE", 1, load_sensitivity=0)
    q = tiny.quote(1, 0, at_utc(1))  # 85 x 1 x 0.7 = 59.5 -> 60
    assert isinstance(q, int) and q >= 1
    huge = TariffPricing("DE", 100_000, load_sensitivity=10)
    assert 1 <= huge.quote(10**9, 1, at_utc(18)) <= MAX_PRICE


def test_quote_rejects_bad_replicas() -> None:
    with pytest.raises(InvalidArgument, match="replicas is 0"):
        TariffPricing("ES").quote(0, 0, at_utc(0))
    with pytest.raises(InvalidArgument, match="replicas"):
        FixedPricing(5).quote(-1, 0, at_utc(0))


def test_fixed_pricing_ignores_everything() -> None:
    p = FixedPricing(1234)
    assert {p.quote(r, load, at_utc(h)) for r in (1, 8) for load in (0, 1) for h in (3, 19)} == {
        1234
    }


# --- validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FixedPricing(0), "policy.fixed.price must be greater than 0"),
        (lambda: FixedPricing(MAX_PRICE + 1), "policy.fixed.price .* absurd"),
        (lambda: TariffPricing("XX"), "policy.tariff.region 'XX' is unknown; known regions: DE, "),
        (lambda: TariffPricing("ES", 0), "policy.tariff.watt_hours_per_replica is 0"),
        (lambda: TariffPricing("ES", 100_001), "watt_hours_per_replica is 100001"),
        (lambda: TariffPricing("ES", 1, -721), "policy.tariff.utc_offset_minutes is -721"),
        (lambda: TariffPricing("ES", 1, 841), "utc_offset_minutes is 841"),
        (lambda: TariffPricing("ES", 1, 0, -0.1), "policy.tariff.load_sensitivity is -0.1"),
        (lambda: TariffPricing("ES", 1, 0, 10.5), "load_sensitivity is 10.5"),
        (lambda: TariffPricing("ES", 1, 0, math.nan), "load_sensitivity is nan"),
        (
            lambda: OfferPolicy(FixedPricing(1), capacity_replicas=10_001),
            "policy.capacity_replicas is 10001",
        ),
        (
            lambda: OfferPolicy(FixedPricing(1), offer_validity_ms=0),
            "policy.offer_validity_ms is 0",
        ),
        (
            lambda: OfferPolicy(FixedPricing(1), offer_validity_ms=3_600_001),
            "policy.offer_validity_ms is 3600001",
        ),
        (lambda: OfferPolicy(None), "one of fixed or tariff"),  # type: ignore[arg-type]
    ],
)
def test_validation_errors(make, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        make()


def test_validation_limits_are_inclusive() -> None:
    FixedPricing(MAX_PRICE)
    TariffPricing("es", 1, -720, 0)
    TariffPricing("ES", 100_000, 840, 10)
    OfferPolicy(FixedPricing(1), capacity_replicas=0, offer_validity_ms=1)
    OfferPolicy(FixedPricing(1), capacity_replicas=10_000, offer_validity_ms=3_600_000)


def test_region_is_case_insensitive() -> None:
    assert TariffPricing("de").region == "DE"


# --- OfferPolicy conversions ------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        OfferPolicy.default(),
        OfferPolicy(FixedPricing(99), capacity_replicas=0, offer_validity_ms=5),
        OfferPolicy(TariffPricing("PT", 42, 0, 0.0), capacity_replicas=3),
        OfferPolicy(TariffPricing("GR", 7, -300, 2.5)),
    ],
)
def test_policy_round_trips(policy: OfferPolicy) -> None:
    assert OfferPolicy.from_proto(policy.to_proto()) == policy
    assert OfferPolicy.from_json(policy.to_json()) == policy


def test_default_policy() -> None:
    p = OfferPolicy.default()
    assert isinstance(p.pricing, TariffPricing)
    assert p.makes_offers
    assert p.quote(1, 0, at_utc(11)) > 0
    assert p.offer_validity == timedelta(milliseconds=p.offer_validity_ms)


def test_from_proto_requires_pricing() -> None:
    with pytest.raises(InvalidArgument, match="policy: one of fixed or tariff"):
        OfferPolicy.from_proto(federator_pb2.OfferPolicy(offer_validity_ms=1))


def test_from_proto_takes_zero_offset_literally() -> None:
    msg = federator_pb2.OfferPolicy(offer_validity_ms=1)
    msg.tariff.region = "DE"
    msg.tariff.watt_hours_per_replica = 1
    p = OfferPolicy.from_proto(msg)
    assert p.pricing.utc_offset_minutes == 0  # type: ignore[union-attr]


def test_from_json_fills_defaults_for_missing_fields() -> None:
    p = OfferPolicy.from_json({"tariff": {"region": "DE"}})
    assert p == OfferPolicy(TariffPricing("DE"))
    assert p.pricing.utc_offset_minutes == 60  # type: ignore[union-attr]
    explicit = OfferPolicy.from_json(
        {
            "tariff": {"region": "DE", "utcOffsetMinutes": 0, "loadSensitivity": 0},
            "capacityReplicas": 0,
        }
    )
    assert explicit.capacity_replicas == 0
    assert explicit.pricing == TariffPricing("DE", utc_offset_minutes=0, load_sensitivity=0)
    assert OfferPolicy.from_json({"fixed": {"price": "7"}}).pricing == FixedPricing(7)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": 1}, "policy: .*bogus"),
        ({"fixed": {"price": "x"}}, "policy: "),
        ({}, "one of fixed or tariff"),
        ({"tariff": {"region": "ZZ"}}, "known regions: DE, ES, FR, GR, IT, NL, PT, SE"),
        ({"fixed": {"price": 0}}, "policy.fixed.price must be greater than 0"),
        ([], "must be a JSON object"),
    ],
)
def test_from_json_errors(data, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        OfferPolicy.from_json(data)


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
    with pytest.raises(InvalidArgument, match="n_providers"):
        seeded_policies(-1, seed=1)


# --- capacity ledger --------------------------------------------------------


async def test_ledger_reserve_release_and_load() -> None:
    ledger = CapacityLedger(10)
    assert ledger.load == 0.0
    await ledger.reserve("f1", 4)
    await ledger.reserve("f2", 6)
    assert ledger.used == 10 and ledger.free == 0 and ledger.load == 1.0
    with pytest.raises(ResourceExhausted, match="10 of 10 replicas committed, 1 requested"):
        await ledger.reserve("f3", 1)
    assert await ledger.release("f1") == 4
    assert await ledger.release("f1") == 0  # idempotent
    assert ledger.load == 0.6
    await ledger.reserve("f3", 4)
    assert ledger.reserved("f3") == 4


async def test_ledger_re_reserve_replaces() -> None:
    ledger = CapacityLedger(5)
    await ledger.reserve("f", 5)
    await ledger.reserve("f", 5)  # retried award: no double counting
    await ledger.reserve("f", 2)
    assert ledger.used == 2
    with pytest.raises(ResourceExhausted):
        await ledger.reserve("f", 6)
    assert ledger.reserved("f") == 2


async def test_ledger_validation_and_zero_capacity() -> None:
    ledger = CapacityLedger(0)
    assert ledger.load == 1.0
    with pytest.raises(ResourceExhausted):
        await ledger.reserve("f", 1)
    with pytest.raises(InvalidArgument, match="replicas is 0"):
        await CapacityLedger(1).reserve("f", 0)
    with pytest.raises(InvalidArgument, match="federation_id is required"):
        await CapacityLedger(1).reserve("", 1)
    with pytest.raises(InvalidArgument, match=r"policy\.capacity_replicas is -1"):
        CapacityLedger(-1)


async def test_ledger_capacity_shrink_keeps_load_bounded() -> None:
    ledger = CapacityLedger(10)
    await ledger.reserve("f", 8)
    ledger.set_capacity(4)
    assert ledger.capacity == 4 and ledger.load == 1.0 and ledger.free == 0


async def test_ledger_concurrent_reservations_never_overcommit() -> None:
    import asyncio

    ledger = CapacityLedger(10)

    async def try_reserve(i: int) -> bool:
        await asyncio.sleep(0)
        try:
            await ledger.reserve(f"f{i}", 3)
        except ResourceExhausted:
            return False
        return True

    results = await asyncio.gather(*(try_reserve(i) for i in range(10)))
    assert sum(results) == 3 and ledger.used == 9
