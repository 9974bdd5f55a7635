"""`mecfed chain keystore` and `mecfed chain deploy` against a real anvil."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from mecfed.chain.anvil import Anvil
from mecfed.chain.keystore import load_key


def rpc(url: str, method: str, params: list[Any]) -> Any:
    """One JSON-RPC call over HTTP, independent of the chain client."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as reply:
        return json.loads(reply.read())["result"]


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
        code = await asyncio.to_thread(rpc, anvil.http_url, "eth_getCode", [address, "latest"])
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

        majority = await asyncio.to_thread(
            mecfed,
            "chain",
            "deploy",
            "--ws-url",
            anvil.ws_url,
            "--keystore",
            str(keystore),
            "--password-file",
            str(password),
            "--policy",
            "majority",
            "--member",
            admin,
            "--record",
            str(record),
        )
        assert majority.returncode == 0, majority.stderr
        assert json.loads(record.read_text()) == {
            "contract": majority.stdout.strip(),
            "ws_url": anvil.ws_url,
            "policy": "majority",
        }
        assert majority.stdout.strip() != address
