"""The chain provisioner against a real anvil on loopback (no namespaces:
the plan's gateway is 127.0.0.1 here)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from mecfed.chain.anvil import DEFAULT_CHAIN_ID, anvil_binary, free_port
from mecfed.chain.client import ChainClient
from mecfed.chain.keystore import load_key
from mecfed.testbed.chain import FUNDING_WEI, anvil_command, ensure_chain
from mecfed.testbed.plan import Params, Underlay, make_plan
from mecfed.testbed.supervisor import Supervisor

TESTBED = "mfapp-chain"


def rpc(port: int, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as reply:
        return json.loads(reply.read())["result"]


def test_anvil_command() -> None:
    assert anvil_command("10.219.0.1", 50050, 5.0) == [
        str(anvil_binary()),
        "--host",
        "10.219.0.1",
        "--port",
        "50050",
        "--chain-id",
        str(DEFAULT_CHAIN_ID),
        "--accounts",
        "10",
        "--balance",
        "10000",
        "--silent",
        "--block-time",
        "5",
    ]
    assert "--block-time" not in anvil_command("127.0.0.1", 1, None)


async def test_ensure_chain_deploys_funds_and_is_idempotent(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    params = Params.build(2, backend="chain", block_time=None, base_port=port + 1)
    plan = make_plan("mfapp", tmp_path, Underlay.of("mfapp-", "127.0.0.0/16"), params)
    sup = Supervisor(TESTBED, stop_timeout=2.0)
    chain: dict[str, Any] = {}
    saved: list[dict[str, Any]] = []
    try:
        await ensure_chain(plan, chain, sup, lambda: saved.append(dict(chain)))
        # The node was recorded before the contract existed.
        assert saved[0] == {"ws_url": f"ws://127.0.0.1:{port}", "pid": chain["pid"]}
        assert set(chain) == {"ws_url", "pid", "contract"}
        code = await asyncio.to_thread(rpc, port, "eth_getCode", [chain["contract"], "latest"])
        assert len(code) > 100
        for system in plan.systems:
            account = load_key(system.keystore, system.password_file)
            assert oct(system.password_file.stat().st_mode & 0o777) == "0o600"
            async with await ChainClient.connect(plan.chain_ws_url, account) as client:
                assert await client.balance(account.address) == FUNDING_WEI
        # Again: the recorded node still runs, nothing new is started.
        before = dict(chain)
        await ensure_chain(plan, chain, sup, lambda: saved.append(dict(chain)))
        assert chain == before and len(saved) == 1
    finally:
        await sup.stop_all(sup.tagged())
    assert sup.tagged() == []
