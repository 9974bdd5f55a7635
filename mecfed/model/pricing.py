"""How a provider prices its offers (see mef/PRICING.md for the tables and formula).

Following the reference paper, a provider's bid is its local electricity
tariff adjusted by a time-of-day factor. We add a load factor so that busy
providers price themselves up and consumers spread over providers.

Unit: every price is **micro-EUR per hour** (1 EUR = 1_000_000), an integer
> 0, i.e. the "smallest currency unit" of ``Offer.price`` and
``Requirements.max_price``. Conveniently, EUR/MWh x Wh = micro-EUR, so the
tariff formula needs no scaling constant.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Self

from mecfed.errors import InvalidArgument
from mecfed.model.checks import MAX_PRICE, require_price, require_range


@dataclass(frozen=True, slots=True)
class Tariff:
    """A region's electricity price and its default (standard-time) UTC offset."""

    region: str
    name: str
    eur_per_mwh: int
    utc_offset_minutes: int


# Approximate 2024 average non-household electricity prices (excluding VAT and
# recoverable taxes), rounded to 5 EUR/MWh; the order of magnitude of Eurostat
# nrg_pc_205. They are illustrative inputs for the benchmark, not market data.
# Offsets are standard time; daylight saving time is deliberately ignored so
# the same policy prices the same hour the same way all year.
TARIFFS: dict[str, Tariff] = {
    t.region: t
    for t in (
        Tariff("ES", "Spain", 120, 60),
        Tariff("PT", "Portugal", 125, 0),
        Tariff("FR", "France", 150, 60),
        Tariff("DE", "Germany", 200, 60),
        Tariff("IT", "Italy", 190, 60),
        Tariff("GR", "Greece", 155, 120),
        Tariff("NL", "Netherlands", 165, 60),
        Tariff("SE", "Sweden", 85, 60),
    )
}

# Multiplier by local hour (index 0 = 00:00-00:59): cheap at night, 1.0 during
# the day, expensive in the evening peak when households add to the load.
TIME_OF_DAY_FACTOR: tuple[float, ...] = (
    *(0.70,) * 6,  # 00-05 night
    0.85,  # 06 morning ramp
    *(1.00,) * 11,  # 07-17 day
    *(1.30,) * 4,  # 18-21 evening peak
    1.00,  # 22
    0.85,  # 23
)
assert len(TIME_OF_DAY_FACTOR) == 24

MIN_WATT_HOURS, MAX_WATT_HOURS = 1, 100_000
MIN_UTC_OFFSET, MAX_UTC_OFFSET = -720, 840
MAX_LOAD_SENSITIVITY = 10.0
MAX_CAPACITY = 10_000
MIN_VALIDITY_MS, MAX_VALIDITY_MS = 1, 3_600_000

# Defaults: a small edge server draws ~150 Wh per replica-hour.
DEFAULT_WATT_HOURS = 150
DEFAULT_LOAD_SENSITIVITY = 1.0
DEFAULT_CAPACITY = 32
DEFAULT_VALIDITY_MS = 60_000


def _known_regions() -> str:
    return ", ".join(sorted(TARIFFS))


def local_hour(now: datetime, utc_offset_minutes: int) -> int:
    """The hour of day at a place ``utc_offset_minutes`` east of UTC."""
    if now.tzinfo is None:
        # A naive datetime would silently be read as the host's local time.
        raise ValueError("now must be timezone-aware")
    return (now.astimezone(UTC) + timedelta(minutes=utc_offset_minutes)).hour


def _check_quote_args(replicas: int, load: float) -> float:
    if replicas < 1:
        raise InvalidArgument.field("replicas", f"is {replicas}; it must be at least 1")
    if math.isnan(load):
        raise InvalidArgument.field("load", "is not a number")
    # CapacityLedger.load is already in [0, 1]; clamp anyway so a load computed
    # elsewhere can never push the factor past its documented maximum.
    return min(max(load, 0.0), 1.0)


LOAD_CAP = 0.9


def load_factor(sensitivity: float, load: float) -> float:
    """1 + sensitivity x u / (1 - u), u = min(load, 0.9).

    Convex like a queueing delay: 1 + s at half capacity, 1 + 3s at 75 %,
    1 + 9s from 90 % on. A linear factor was too weak: with tariffs that
    differ 2.4x between regions the cheapest provider still won every
    federation (the reference implementation's failure); with this one,
    providers fill until their prices meet, so wins spread over all of them.
    """
    u = min(max(load, 0.0), LOAD_CAP)
    return 1.0 + sensitivity * u / (1.0 - u)


@dataclass(frozen=True, slots=True)
class FixedPricing:
    """One price per hour for the whole offer, whatever replicas, load or time."""

    price: int

    def __post_init__(self) -> None:
        require_price(self.price, "fixed.price")

    def quote(self, replicas: int, load: float, now: datetime) -> int:
        _check_quote_args(replicas, load)
        return self.price


@dataclass(frozen=True, slots=True)
class TariffPricing:
    """The paper's tariff x time-of-day model, plus a load factor.

    ``utc_offset_minutes=None`` takes the region's default offset.
    """

    region: str
    watt_hours_per_replica: int = DEFAULT_WATT_HOURS
    utc_offset_minutes: int | None = None
    load_sensitivity: float = DEFAULT_LOAD_SENSITIVITY

    def __post_init__(self) -> None:
        region = self.region.upper()
        if region not in TARIFFS:
            raise InvalidArgument.field(
                "tariff.region",
                f"{self.region[:16]!r} is unknown; known regions: {_known_regions()}",
            )
        object.__setattr__(self, "region", region)
        if self.utc_offset_minutes is None:
            object.__setattr__(self, "utc_offset_minutes", TARIFFS[region].utc_offset_minutes)
        require_range(
            self.watt_hours_per_replica,
            "tariff.watt_hours_per_replica",
            MIN_WATT_HOURS,
            MAX_WATT_HOURS,
        )
        require_range(
            self.utc_offset_minutes,  # type: ignore[arg-type]
            "tariff.utc_offset_minutes",
            MIN_UTC_OFFSET,
            MAX_UTC_OFFSET,
        )
        # NaN fails this comparison too, so it is rejected here.
        require_range(
            self.load_sensitivity,
            "tariff.load_sensitivity",
            0.0,
            MAX_LOAD_SENSITIVITY,
        )

    @property
    def tariff(self) -> Tariff:
        return TARIFFS[self.region]

    def factors(self, load: float, now: datetime) -> tuple[float, float]:
        """(time-of-day factor, load factor) for ``now`` and ``load``."""
        hour = local_hour(now, self.utc_offset_minutes or 0)
        return TIME_OF_DAY_FACTOR[hour], load_factor(self.load_sensitivity, load)

    def quote(self, replicas: int, load: float, now: datetime) -> int:
        """Price per hour in micro-EUR:

        EUR/MWh x Wh/replica x replicas x time-of-day x load_factor(sensitivity, load)
        """
        load = _check_quote_args(replicas, load)
        tod, load_factor = self.factors(load, now)
        raw = self.tariff.eur_per_mwh * self.watt_hours_per_replica * replicas
        price = round(raw * tod * load_factor)
        return min(max(price, 1), MAX_PRICE)


Pricing = FixedPricing | TariffPricing


@dataclass(frozen=True, slots=True)
class OfferPolicy:
    """How this system answers offer requests (mecfed.v1.OfferPolicy)."""

    pricing: Pricing
    # 0 means the system makes no offers at all.
    capacity_replicas: int = DEFAULT_CAPACITY
    offer_validity_ms: int = DEFAULT_VALIDITY_MS

    def __post_init__(self) -> None:
        if not isinstance(self.pricing, FixedPricing | TariffPricing):
            raise InvalidArgument.field("pricing", "one of fixed or tariff pricing is required")
        require_range(self.capacity_replicas, "capacity_replicas", 0, MAX_CAPACITY)
        require_range(
            self.offer_validity_ms,
            "offer_validity_ms",
            MIN_VALIDITY_MS,
            MAX_VALIDITY_MS,
        )

    @classmethod
    def default(cls) -> Self:
        return cls(pricing=TariffPricing("ES"))

    @property
    def makes_offers(self) -> bool:
        return self.capacity_replicas > 0

    @property
    def offer_validity(self) -> timedelta:
        return timedelta(milliseconds=self.offer_validity_ms)

    def quote(self, replicas: int, load: float, now: datetime) -> int:
        return self.pricing.quote(replicas, load, now)


def seeded_policies(
    n_providers: int,
    seed: int,
    *,
    watt_hours_per_replica: int = DEFAULT_WATT_HOURS,
    load_sensitivity: float = DEFAULT_LOAD_SENSITIVITY,
    capacity_replicas: int = DEFAULT_CAPACITY,
    offer_validity_ms: int = DEFAULT_VALIDITY_MS,
) -> list[OfferPolicy]:
    """Deterministic tariff policies for a benchmark/testbed of ``n_providers``.

    Regions are dealt round-robin over a seed-shuffled region list, so any 8
    consecutive providers cover every region. Each provider's energy draw is
    jittered by up to +-10% so providers in the same region still bid
    differently.
    """
    require_range(n_providers, "n_providers", 0, MAX_CAPACITY)
    rng = random.Random(seed)
    regions = sorted(TARIFFS)
    rng.shuffle(regions)
    spread = math.floor(watt_hours_per_replica * 0.1)
    policies = []
    for i in range(n_providers):
        region = regions[i % len(regions)]
        wh = watt_hours_per_replica + rng.randint(-spread, spread)
        policies.append(
            OfferPolicy(
                pricing=TariffPricing(
                    region=region,
                    watt_hours_per_replica=min(max(wh, MIN_WATT_HOURS), MAX_WATT_HOURS),
                    utc_offset_minutes=TARIFFS[region].utc_offset_minutes,
                    load_sensitivity=load_sensitivity,
                ),
                capacity_replicas=capacity_replicas,
                offer_validity_ms=offer_validity_ms,
            )
        )
    return policies


__all__ = [
    "TARIFFS",
    "TIME_OF_DAY_FACTOR",
    "FixedPricing",
    "OfferPolicy",
    "Pricing",
    "Tariff",
    "TariffPricing",
    "local_hour",
    "seeded_policies",
]
