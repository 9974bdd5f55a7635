"""The MEF's memory budget (<= 150 MB RSS) with the chain client in use."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from eth_account import Account

from mecfed.chain.anvil import REPO_ROOT, Anvil

pytestmark = pytest.mark.asyncio(loop_scope="session")

BUDGET_MIB = 150 * 10**6 / 2**20


async def test_rss_with_live_streams_and_transactions(anvil: Anvil) -> None:
    account = Account.create()
    await anvil.fund(account.address, 10**20)
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.chain.rss_probe",
        anvil.ws_url,
        account.key.hex(),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(probe.communicate(), 120)
    finally:
        if probe.returncode is None:
            probe.kill()
            await probe.wait()
    assert probe.returncode == 0, err.decode()[-2000:]
    figures = json.loads(out)
    print(f"chain client RSS (MiB): {figures}")
    assert figures["after_transactions"] < BUDGET_MIB
    # Streams and transactions cost next to nothing beyond the imports.
    assert figures["after_transactions"] - figures["imported"] < 20
