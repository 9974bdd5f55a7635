"""Unit tests of VNI / port / subnet allocation (no root needed)."""

from __future__ import annotations

import asyncio
import random

import pytest

from mecfed.errors import InvalidArgument, ResourceExhausted
from mecfed.model import TunnelCandidate as Candidate
from meo.alloc import OverlayAllocator, consumer_ip, provider_ip
from meo.network import VxlanInfo


def _alloc(existing=(), vni=(1000, 1_000_000), ports=(4789, 4889), seed=1) -> OverlayAllocator:
    return OverlayAllocator(
        vni_range=vni,
        port_range=ports,
        overlay_pool="172.30.0.0/16",
        host_vxlans=lambda: list(existing),
        rng=random.Random(seed),
    )


async def test_concurrent_reservations_never_collide():
    alloc = _alloc()
    results = await asyncio.gather(*(alloc.reserve(f"f{i}", 4) for i in range(10)))
    cands = [c for r in results for c in r.candidates]
    assert len({c.vni for c in cands}) == 40
    assert len({c.udp_port for c in cands}) == 40
    assert len({r.subnet for r in results}) == 10
    assert all(1000 <= c.vni <= 1_000_000 and 4789 <= c.udp_port <= 4889 for c in cands)


async def test_reserve_is_idempotent_per_federation():
    alloc = _alloc()
    assert await alloc.reserve("f", 3) is await alloc.reserve("f", 3)


async def test_existing_host_links_are_avoided():
    existing = [VxlanInfo("x", v, 4789 + (v - 1)) for v in range(1, 6)]
    alloc = _alloc(existing, vni=(1, 10), ports=(4789, 4798))
    res = await alloc.reserve("f", 5)
    assert {c.vni for c in res.candidates} == {6, 7, 8, 9, 10}
    assert {c.udp_port for c in res.candidates} == set(range(4794, 4799))
    with pytest.raises(ResourceExhausted):
        await alloc.reserve("g", 1)


async def test_provider_takes_first_free_candidate():
    alloc = _alloc([VxlanInfo("x", 500, 4800)])
    offered = [
        Candidate(500, 4790),
        Candidate(501, 4800),
        Candidate(502, 4801),
        Candidate(503, 4802),
    ]
    assert await alloc.claim_first_free("f", offered) == Candidate(502, 4801)
    # The claim is now a reservation: another federation skips it.
    assert await alloc.claim_first_free("g", offered) == Candidate(503, 4802)
    with pytest.raises(ResourceExhausted):
        await alloc.claim_first_free("h", offered[:3])
    await alloc.release("f")
    assert await alloc.claim_first_free("h", offered) == Candidate(502, 4801)


async def test_narrow_keeps_only_chosen_and_release_frees():
    alloc = _alloc(vni=(1, 4), ports=(5000, 5003))
    cands = list((await alloc.reserve("f", 4)).candidates)
    await alloc.narrow("f", cands[2])
    assert alloc.reservations["f"].candidates == [cands[2]]
    other = await alloc.reserve("g", 3)
    assert cands[2] not in other.candidates
    await alloc.release("f")
    await alloc.release("f")  # idempotent
    assert "f" not in alloc.reservations


async def test_bad_candidate_count():
    with pytest.raises(InvalidArgument):
        await _alloc().reserve("f", 17)
    with pytest.raises(InvalidArgument):
        await _alloc().reserve("f", 0)


def test_addressing_rule():
    assert str(consumer_ip("172.30.7.0/24", 0)) == "172.30.7.1/24"
    assert str(consumer_ip("172.30.7.0/24", 15)) == "172.30.7.16/24"
    assert str(provider_ip("172.30.7.0/24", 0)) == "172.30.7.129/24"
    with pytest.raises(ResourceExhausted):
        provider_ip("172.30.7.0/24", 126)


def test_bad_config_rejected():
    with pytest.raises(ValueError):
        _alloc(vni=(0, 10))
    with pytest.raises(ValueError):
        _alloc(ports=(80, 100))
