"""Underlay links cut during deployment, during the traffic check and after
establishment. Documented outcomes:

- cut during deployment or the traffic check: the federation fails (or falls
  back to the other provider) with a reason, and nothing is left once the
  link is back;
- cut after establishment: the consumer's liveness watch moves the
  federation to DEGRADED within a few periods, and back to ESTABLISHED once
  traffic passes again; both transitions are in its history with times.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.bed import LIVE, FaultBed, S, state_name

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_link_down_after_establishment_degrades_and_recovers(bed: FaultBed) -> None:
    fid = await bed.request()
    fed = await bed.settle(fid)
    assert fed.state == S.FEDERATION_STATE_ESTABLISHED, fed.error.detail
    cut_at = time.time()
    await bed.set_underlay(fed.provider_id, up=False)
    try:
        degraded = await bed.wait_for(fid, {S.FEDERATION_STATE_DEGRADED}, timeout=30, passed=False)
        assert degraded.state == S.FEDERATION_STATE_DEGRADED, state_name(degraded.state)
        assert degraded.liveness.received < degraded.liveness.sent
    finally:
        await bed.set_underlay(fed.provider_id, up=True)
    back = await bed.wait_for(fid, {S.FEDERATION_STATE_ESTABLISHED}, timeout=30, passed=False)
    assert back.state == S.FEDERATION_STATE_ESTABLISHED
    history = [(h.state, h.at.ToNanoseconds() / 1e9) for h in back.history]
    states = [s for s, _ in history]
    assert states[-2:] == [S.FEDERATION_STATE_DEGRADED, S.FEDERATION_STATE_ESTABLISHED]
    degraded_at = history[-2][1]
    assert cut_at <= degraded_at <= history[-1][1]
    assert back.history[-2].reason  # what the measurement saw
    await bed.terminate(fid)
    await bed.assert_clean()


@pytest.mark.parametrize("when", [S.FEDERATION_STATE_DEPLOYING, S.FEDERATION_STATE_CONNECTING])
async def test_link_down_before_the_check_fails_cleanly(bed: FaultBed, when: int) -> None:
    fid = await bed.request()
    seen = await bed.wait_for(fid, {when})
    victim = seen.provider_id
    if not victim:
        pytest.fail(f"no provider at {state_name(seen.state)}")
    await bed.set_underlay(victim, up=False)
    try:
        fed = await bed.settle(fid, timeout=180)
    finally:
        await bed.set_underlay(victim, up=True)
    if fed.state in LIVE:
        # Only possible through the other provider, or if the check passed
        # before the cut took effect.
        assert fed.provider_id != victim or seen.state == S.FEDERATION_STATE_VERIFYING
    else:
        assert fed.state == S.FEDERATION_STATE_FAILED and fed.error.detail
    await asyncio.sleep(0.5)
    await bed.terminate(fid)
    await bed.assert_clean(timeout=60)
    await bed.assert_healthy_federation()
