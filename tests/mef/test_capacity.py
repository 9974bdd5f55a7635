"""Tests for mef.capacity: the replicas a provider has committed (moved
from tests/mef/test_pricing.py)."""

from __future__ import annotations

import asyncio

import pytest

from mecfed.errors import InvalidArgument, ResourceExhausted
from mef.capacity import CapacityLedger


async def test_ledger_reserve_release_and_load() -> None:
    ledger = CapacityLedger(10)
    assert ledger.load == 0.0 and ledger.capacity == 10 and ledger.free == 10
    await ledger.reserve("f1", 4)
    await ledger.reserve("f2", 6)
    assert ledger.used == 10 and ledger.free == 0 and ledger.load == 1.0
    with pytest.raises(ResourceExhausted, match="10 of 10 replicas committed, 1 requested"):
        await ledger.reserve("f3", 1)
    assert await ledger.release("f1") == 4
    assert await ledger.release("f1") == 0  # idempotent
    assert await ledger.release("never") == 0
    assert ledger.load == 0.6
    await ledger.reserve("f3", 4)
    assert ledger.reserved("f3") == 4
    assert ledger.reserved("f1") == 0


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
    assert ledger.load == 1.0 and ledger.free == 0
    with pytest.raises(ResourceExhausted):
        await ledger.reserve("f", 1)
    with pytest.raises(InvalidArgument, match="replicas is 0"):
        await CapacityLedger(1).reserve("f", 0)
    with pytest.raises(InvalidArgument, match="federation_id is required"):
        await CapacityLedger(1).reserve("", 1)
    with pytest.raises(InvalidArgument, match=r"^capacity_replicas is -1"):
        CapacityLedger(-1)
    with pytest.raises(InvalidArgument, match=r"^capacity_replicas is 10001"):
        CapacityLedger(10_001)
    assert CapacityLedger(10_000).capacity == 10_000


async def test_ledger_capacity_shrink_keeps_load_bounded() -> None:
    ledger = CapacityLedger(10)
    await ledger.reserve("f", 8)
    ledger.set_capacity(4)
    assert ledger.capacity == 4 and ledger.load == 1.0 and ledger.free == 0
    assert ledger.reserved("f") == 8  # existing reservations stay
    with pytest.raises(InvalidArgument, match="capacity_replicas"):
        ledger.set_capacity(-1)
    assert ledger.capacity == 4


async def test_ledger_concurrent_reservations_never_overcommit() -> None:
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
