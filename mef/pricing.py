"""How a provider prices its offers (see PRICING.md for the tables and formula).

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
from typing import Any, Self

from google.protobuf import json_format

from mecfed.errors import InvalidArgument, ResourceExhausted
from mecfed.v1 import federator_pb2
from mecfed.validation import MAX_PRICE, require_price, require_range


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
        raise InvalidArgument(f"replicas is {replicas}; it must be at least 1")
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
        require_price(self.price, "policy.fixed.price")

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
            raise InvalidArgument(
                f"policy.tariff.region {self.region[:16]!r} is unknown; "
                f"known regions: {_known_regions()}"
            )
        object.__setattr__(self, "region", region)
        if self.utc_offset_minutes is None:
            object.__setattr__(self, "utc_offset_minutes", TARIFFS[region].utc_offset_minutes)
        require_range(
            self.watt_hours_per_replica,
            "policy.tariff.watt_hours_per_replica",
            MIN_WATT_HOURS,
            MAX_WATT_HOURS,
        )
        require_range(
            self.utc_offset_minutes,  # type: ignore[arg-type]
            "policy.tariff.utc_offset_minutes",
            MIN_UTC_OFFSET,
            MAX_UTC_OFFSET,
        )
        # NaN fails this comparison too, so it is rejected here.
        require_range(
            self.load_sensitivity,
            "policy.tariff.load_sensitivity",
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
    """How this system answers offer requests (mirrors federator_pb2.OfferPolicy)."""

    pricing: Pricing
    # 0 means the system makes no offers at all.
    capacity_replicas: int = DEFAULT_CAPACITY
    offer_validity_ms: int = DEFAULT_VALIDITY_MS

    def __post_init__(self) -> None:
        if not isinstance(self.pricing, FixedPricing | TariffPricing):
            raise InvalidArgument("policy: one of fixed or tariff pricing is required")
        require_range(self.capacity_replicas, "policy.capacity_replicas", 0, MAX_CAPACITY)
        require_range(
            self.offer_validity_ms,
            "policy.offer_validity_ms",
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

    @classmethod
    def from_proto(cls, msg: federator_pb2.OfferPolicy) -> Self:
        which = msg.WhichOneof("pricing")
        pricing: Pricing
        if which == "fixed":
            pricing = FixedPricing(msg.fixed.price)
        elif which == "tariff":
            t = msg.tariff
            pricing = TariffPricing(
                region=t.region,
                watt_hours_per_replica=t.watt_hours_per_replica,
                utc_offset_minutes=t.utc_offset_minutes,
                load_sensitivity=t.load_sensitivity,
            )
        else:
            raise InvalidArgument("policy: one of fixed or tariff pricing is required")
        return cls(
            pricing=pricing,
            capacity_replicas=msg.capacity_replicas,
            offer_validity_ms=msg.offer_validity_ms,
        )

    def to_proto(self) -> federator_pb2.OfferPolicy:
        msg = federator_pb2.OfferPolicy(
            capacity_replicas=self.capacity_replicas,
            offer_validity_ms=self.offer_validity_ms,
        )
        if isinstance(self.pricing, FixedPricing):
            msg.fixed.price = self.pricing.price
        else:
            msg.tariff.region = self.pricing.region
            msg.tariff.watt_hours_per_replica = self.pricing.watt_hours_per_replica
            msg.tariff.utc_offset_minutes = self.pricing.utc_offset_minutes or 0
            msg.tariff.load_sensitivity = self.pricing.load_sensitivity
        return msg

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Parses the protobuf JSON form, e.g. from a config file:
        ``{"tariff": {"region": "DE", "wattHoursPerReplica": 200},
        "capacityReplicas": 8, "offerValidityMs": 30000}``.

        Unlike ``from_proto``, fields left out take this module's defaults
        (region UTC offset, 150 Wh, sensitivity 1, 32 replicas, 60 s) instead
        of proto3 zeros: in a hand-written file a missing ``capacityReplicas``
        should not silently mean "make no offers", nor a missing offset UTC.
        """
        if not isinstance(data, dict):
            raise InvalidArgument(f"policy must be a JSON object, not {type(data).__name__}")
        msg = federator_pb2.OfferPolicy()
        try:
            json_format.ParseDict(data, msg)
        except json_format.ParseError as exc:
            raise InvalidArgument(f"policy: {exc}") from None
        return cls.from_proto(_with_defaults(msg, data))

    def to_json(self) -> dict[str, Any]:
        return json_format.MessageToDict(self.to_proto(), always_print_fields_with_no_presence=True)


def _given(data: dict[str, Any], json_name: str, proto_name: str) -> bool:
    return json_name in data or proto_name in data


def _with_defaults(
    msg: federator_pb2.OfferPolicy, data: dict[str, Any]
) -> federator_pb2.OfferPolicy:
    """Fills the proto fields absent from ``data`` with the dataclass defaults."""
    out = federator_pb2.OfferPolicy()
    out.CopyFrom(msg)
    if not _given(data, "capacityReplicas", "capacity_replicas"):
        out.capacity_replicas = DEFAULT_CAPACITY
    if not _given(data, "offerValidityMs", "offer_validity_ms"):
        out.offer_validity_ms = DEFAULT_VALIDITY_MS
    tariff = data.get("tariff")
    if out.WhichOneof("pricing") == "tariff" and isinstance(tariff, dict):
        if not _given(tariff, "wattHoursPerReplica", "watt_hours_per_replica"):
            out.tariff.watt_hours_per_replica = DEFAULT_WATT_HOURS
        if not _given(tariff, "loadSensitivity", "load_sensitivity"):
            out.tariff.load_sensitivity = DEFAULT_LOAD_SENSITIVITY
        if not _given(tariff, "utcOffsetMinutes", "utc_offset_minutes"):
            known = TARIFFS.get(out.tariff.region.upper())
            if known is not None:  # unknown regions fail validation next
                out.tariff.utc_offset_minutes = known.utc_offset_minutes
    return out


class CapacityLedger:
    """Replicas this provider has committed to federations.

    Methods contain no ``await`` between check and update, so each is atomic
    on the event loop; they are ``async`` to match the rest of the federator.
    Reserving again for the same federation replaces its earlier reservation,
    so a retried award is harmless; releasing is idempotent for the same reason.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = 0
        self.set_capacity(capacity)
        self._by_federation: dict[str, int] = {}

    @property
    def capacity(self) -> int:
        return self._capacity

    def set_capacity(self, capacity: int) -> None:
        """Changes capacity (e.g. a new offer policy); existing reservations stay."""
        require_range(capacity, "policy.capacity_replicas", 0, MAX_CAPACITY)
        self._capacity = capacity

    @property
    def used(self) -> int:
        return sum(self._by_federation.values())

    @property
    def free(self) -> int:
        return max(self._capacity - self.used, 0)

    @property
    def load(self) -> float:
        """Used fraction of capacity in [0, 1]; 1 when there is no capacity."""
        if self._capacity == 0:
            return 1.0
        return min(self.used / self._capacity, 1.0)

    def reserved(self, federation_id: str) -> int:
        return self._by_federation.get(federation_id, 0)

    async def reserve(self, federation_id: str, replicas: int) -> None:
        if not federation_id:
            raise InvalidArgument("federation_id is required")
        if replicas < 1:
            raise InvalidArgument(f"replicas is {replicas}; it must be at least 1")
        others = self.used - self.reserved(federation_id)
        if others + replicas > self._capacity:
            raise ResourceExhausted(
                f"capacity exhausted: {others} of {self._capacity} replicas committed, "
                f"{replicas} requested"
            )
        self._by_federation[federation_id] = replicas

    async def release(self, federation_id: str) -> int:
        """Frees a federation's replicas; returns how many (0 if none)."""
        return self._by_federation.pop(federation_id, 0)


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
    "CapacityLedger",
    "FixedPricing",
    "OfferPolicy",
    "Pricing",
    "Tariff",
    "TariffPricing",
    "local_hour",
    "seeded_policies",
]
