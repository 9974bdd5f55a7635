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
from mecfed.testbed import Testbed, TestbedState
from mecfed.testbed.chain import (
    FUNDING_WEI,
    anvil_command,
    ensure_chain,
    restart_node,
    stop_node,
)
from mecfed.testbed.plan import Params, Underlay, make_plan
from mecfed.testbed.state import UP, StateFile
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
        assert saved[0] == {
            "ws_url": f"ws://127.0.0.1:{port}",
            "pid": chain["pid"],
            "state_file": str(plan.chain_dir / "state.json"),
        }
        assert set(chain) == {"ws_url", "pid", "contract", "state_file"}
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


def test_anvil_command_keeps_state(tmp_path: Path) -> None:
    cmd = anvil_command("127.0.0.1", 1, None, tmp_path / "state.json")
    assert cmd[-4:] == ["--state", str(tmp_path / "state.json"), "--state-interval", "1"]


async def test_node_restart_keeps_the_chain_and_reset_drops_it(tmp_path: Path) -> None:
    """The testbed's node keeps its chain across a SIGTERM or a SIGKILL
    (state dumped every second) and comes back on the same port; a reset
    starts a fresh chain without the contract; a later bring-up reuses a
    recorded chain whose node died instead of deploying a new one."""
    port = free_port("127.0.0.1")
    testbed = Testbed("mfcc", state_dir=tmp_path, subnet="127.0.0.0/16", base_port=port + 1)
    params = Params.build(2, backend="chain", block_time=None, base_port=port + 1)
    plan = make_plan(testbed.name, tmp_path, testbed.underlay, params)
    state = TestbedState(
        name=testbed.name,
        prefix=testbed.prefix,
        subnet="127.0.0.0/16",
        gateway="127.0.0.1",
        status=UP,
        params=params.as_dict(),
    )
    files = StateFile(testbed.state_path)

    def save() -> None:
        files.save(state)

    def code() -> str:
        return str(rpc(port, "eth_getCode", [state.chain["contract"], "latest"]))

    try:
        await ensure_chain(plan, state.chain, testbed.supervisor, save)
        save()
        assert state.chain["state_file"] == str(plan.chain_dir / "state.json")
        contract, first_pid = state.chain["contract"], state.chain["pid"]
        assert len(await asyncio.to_thread(code)) > 100
        await asyncio.sleep(1.5)  # past a state dump
        for kill in (False, True):
            await restart_node(testbed, kill=kill)
            state = testbed.load_state()  # type: ignore[assignment]
            assert state.chain["pid"] != first_pid and state.chain["contract"] == contract
            assert len(await asyncio.to_thread(code)) > 100
        await stop_node(testbed, kill=True)
        state = testbed.load_state()  # type: ignore[assignment]
        await ensure_chain(plan, state.chain, testbed.supervisor, save)  # restarted, not redeployed
        assert state.chain["contract"] == contract
        assert len(await asyncio.to_thread(code)) > 100
        save()
        await restart_node(testbed, reset=True)
        assert await asyncio.to_thread(code) == "0x"
    finally:
        await testbed.supervisor.stop_all(testbed.supervisor.tagged())
    assert testbed.supervisor.tagged() == []
