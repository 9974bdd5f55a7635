"""`mecfed chain keystore` and `mecfed chain deploy` against a real anvil."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from mecfed.chain.anvil import Anvil
from mecfed.chain.client import ChainClient
from mecfed.chain.keystore import load_key


def mecfed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mecfed.cli", *args], capture_output=True, text=True, timeout=120
    )


async def test_keystore_then_deploy_records_a_live_contract(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret")
    keystore = tmp_path / "admin.json"
    made = await asyncio.to_thread(
        mecfed, "chain", "keystore", "--keystore", str(keystore), "--password-file", str(password)
    )
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip()
    assert admin == load_key(keystore, password).address
    assert oct(keystore.stat().st_mode & 0o777) == "0o600"

    async with Anvil() as anvil:
        await anvil.fund(admin, 10**18)
        record = tmp_path / "chain.json"
        deployed = await asyncio.to_thread(
            mecfed,
            "chain",
            "deploy",
            "--ws-url",
            anvil.ws_url,
            "--keystore",
            str(keystore),
            "--password-file",
            str(password),
            "--record",
            str(record),
        )
        assert deployed.returncode == 0, deployed.stderr
        address = deployed.stdout.strip()
        assert json.loads(record.read_text())["contract"] == address
        async with await ChainClient.connect(anvil.ws_url, load_key(keystore, password)) as c:
            code = await c.request("eth_getCode", [address, "latest"])
        assert len(code) > 100

        wrong = tmp_path / "wrong"
        wrong.write_text("nope")
        refused = await asyncio.to_thread(
            mecfed,
            "chain",
            "deploy",
            "--ws-url",
            anvil.ws_url,
            "--keystore",
            str(keystore),
            "--password-file",
            str(wrong),
            "--record",
            str(record),
        )
        assert refused.returncode != 0
        assert "password" in refused.stderr.lower()
