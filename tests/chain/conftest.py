"""Fixtures: a real anvil (automine) per session, clients, the compiled Counter."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mecfed.chain.anvil import REPO_ROOT, Anvil
from mecfed.chain.client import ChainClient

HERE = Path(__file__).parent

# evmVersion berlin: the same bytecode also runs on a pre-London anvil
# (legacy-fee test), which lacks PUSH0.
_COMPILE_JS = """
const solc = require(process.argv[1]);
const fs = require('fs');
const input = {
  language: 'Solidity',
  sources: {'Counter.sol': {content: fs.readFileSync(process.argv[2], 'utf8')}},
  settings: {evmVersion: 'berlin',
             outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object']}}},
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter(e => e.severity === 'error');
if (errors.length) { console.error(JSON.stringify(errors)); process.exit(1); }
const c = out.contracts['Counter.sol'].Counter;
console.log(JSON.stringify({abi: c.abi, bytecode: '0x' + c.evm.bytecode.object}));
"""


@pytest.fixture(scope="session")
def counter_artifact() -> dict[str, Any]:
    out = subprocess.run(
        [
            "node",
            "-e",
            _COMPILE_JS,
            str(REPO_ROOT / "node_modules/solc"),
            str(HERE / "Counter.sol"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def anvil() -> AsyncIterator[Anvil]:
    async with Anvil(host="127.0.0.1", accounts=10) as node:
        yield node


@pytest_asyncio.fixture(loop_scope="session")
async def client(anvil: Anvil) -> AsyncIterator[ChainClient]:
    c = await ChainClient.connect(anvil.ws_url, anvil.dev_accounts[0])
    try:
        yield c
    finally:
        await c.close()


@pytest_asyncio.fixture(loop_scope="session")
async def other(anvil: Anvil) -> AsyncIterator[ChainClient]:
    """A second client (another account, its own connection)."""
    c = await ChainClient.connect(anvil.ws_url, anvil.dev_accounts[2])
    try:
        yield c
    finally:
        await c.close()


@pytest_asyncio.fixture(loop_scope="session")
async def counter(client: ChainClient, counter_artifact: dict[str, Any]) -> Any:
    """A fresh Counter, as a web3 contract object of ``client``."""
    address, _ = await client.deploy(counter_artifact["abi"], counter_artifact["bytecode"])
    return client.contract(address, counter_artifact["abi"])


async def rpc(client: ChainClient, method: str, *params: Any) -> Any:
    """A raw request (test-only methods such as evm_mine / anvil_*)."""
    reply = await client.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in reply, reply
    return reply.get("result")
