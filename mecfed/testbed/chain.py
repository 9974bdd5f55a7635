"""The testbed's local chain (chain backend): an anvil node on the underlay
gateway, one encrypted keystore per MEC system, the Federation contract with
every system on its allowlist, and funds for gas and escrow.

anvil runs as a supervised testbed process (tagged, in the root namespace),
not through :class:`mecfed.chain.anvil.Anvil`, whose node dies with the
process that started it: ``mecfed testbed up`` returns and leaves the
testbed running.

The node keeps its chain across a restart, as a real network's nodes do: it
runs with ``--state <chain_dir>/state.json`` and dumps the state every
:data:`STATE_INTERVAL_S` second (and on SIGTERM), so a SIGKILL loses at most
the last second of blocks. What a restart loses anyway is the transaction
pool (anvil does not persist it): exactly the fault the chain client's
journal repairs. :func:`stop_node`, :func:`restart_node` (``reset=True``:
a fresh chain without the state, the contract gone) are the fault suite's
levers (``mecfed testbed chain-stop|chain-kill|chain-restart|chain-reset``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount

from mecfed.chain.anvil import DEFAULT_CHAIN_ID, anvil_binary, dev_accounts
from mecfed.chain.client import ChainClient
from mecfed.chain.federation import FederationContract, MembershipPolicy
from mecfed.chain.keystore import create_keystore
from mecfed.errors import FailedPrecondition, Unavailable
from mecfed.testbed.plan import Params, Plan, SystemPlan, make_plan
from mecfed.testbed.state import StateFile, TestbedState
from mecfed.testbed.supervisor import NotHealthy, Process, Supervisor, is_alive, is_tagged, stop

if TYPE_CHECKING:
    from mecfed.testbed.testbed import Testbed

DEV_ACCOUNTS = 10
DEV_BALANCE_ETH = 10_000
FUNDING_WEI = 100 * 10**18  # per system: gas and escrow for many federations
# Lighter scrypt than the production default: N systems unlock their keys
# at once on a 2-core machine.
KEYSTORE_SCRYPT_N = 2**14
READY_TIMEOUT = 30.0
STATE_INTERVAL_S = 1  # a SIGKILL of the node loses at most this much chain
STATE_FILE = "state.json"


def anvil_command(
    host: str, port: int, block_time: float | None, state_file: Path | None = None
) -> list[str]:
    """argv of the chain node: the pinned anvil with its dev accounts (the
    well-known test mnemonic; the first one deploys and funds), its chain
    kept in ``state_file`` (loaded at start, dumped every second and on exit)."""
    cmd = [
        str(anvil_binary()),
        "--host",
        host,
        "--port",
        str(port),
        "--chain-id",
        str(DEFAULT_CHAIN_ID),
        "--accounts",
        str(DEV_ACCOUNTS),
        "--balance",
        str(DEV_BALANCE_ETH),
        "--silent",
    ]
    if block_time is not None:
        cmd += ["--block-time", f"{block_time:g}"]
    if state_file is not None:
        cmd += ["--state", str(state_file), "--state-interval", str(STATE_INTERVAL_S)]
    return cmd


def write_keystore(system: SystemPlan) -> str:
    """A fresh random password and an encrypted key for ``system``; its address."""
    system.keystore.parent.mkdir(parents=True, exist_ok=True)
    system.password_file.write_text(secrets.token_urlsafe(24))
    system.password_file.chmod(0o600)
    return create_keystore(
        system.keystore, system.password_file, scrypt_n=KEYSTORE_SCRYPT_N, overwrite=True
    )


async def wait_for_port(host: str, port: int, proc: Process, deadline: float) -> None:
    """Until something accepts TCP connections on ``host:port``; fails early
    if ``proc`` exits."""
    delay = 0.05
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            if not proc.alive():
                raise NotHealthy(f"anvil exited: {proc.log_tail()}") from exc
            if time.monotonic() > deadline:
                raise NotHealthy(f"anvil not listening on {host}:{port}: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def connect_when_ready(
    plan: Plan, account: LocalAccount, proc: Process, timeout: float = READY_TIMEOUT
) -> ChainClient:
    deadline = time.monotonic() + timeout
    await wait_for_port(plan.chain_host, plan.chain_port, proc, deadline)
    delay = 0.05
    while True:
        try:
            return await ChainClient.connect(plan.chain_ws_url, account)
        except (Unavailable, OSError) as exc:
            if not proc.alive():
                raise NotHealthy(f"anvil exited: {proc.log_tail()}") from exc
            if time.monotonic() > deadline:
                raise NotHealthy(f"anvil not answering at {plan.chain_ws_url}: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


async def deploy_and_fund(client: ChainClient, members: Sequence[str]) -> str:
    """Deploys the contract with ``members`` allowlisted and funds each; the
    contract's address."""
    contract = await FederationContract.deploy(client, MembershipPolicy.ALLOWLIST, list(members))
    await asyncio.gather(*(client.transfer(a, FUNDING_WEI) for a in members))
    return contract.address


async def ensure_chain(
    plan: Plan, chain: dict[str, Any], supervisor: Supervisor, save: Callable[[], None]
) -> None:
    """Brings the chain of ``plan`` up unless ``chain`` (the state's record:
    ``ws_url``, ``pid``, ``contract``, ``state_file``) names a node that
    still runs. A recorded chain whose node is gone is restarted from its
    state file when that still holds the contract; anything else starts a
    fresh chain. The node's pid is recorded (and saved) before the contract
    is deployed."""
    if supervisor.running("anvil", chain.get("pid"), plan.chain_dir / "anvil.log"):
        return
    state_file = plan.chain_dir / STATE_FILE
    if chain.get("contract") and state_file.exists():
        proc = _start_node(plan, chain, supervisor, state_file)
        save()
        if await _has_code(plan, proc, chain["contract"]):
            return
        await _stop_pid(supervisor, proc.pid, kill=True)
    chain.clear()
    state_file.unlink(missing_ok=True)  # a fresh chain, not an older one's
    proc = _start_node(plan, chain, supervisor, state_file)
    save()
    addresses = [await asyncio.to_thread(write_keystore, s) for s in plan.systems]
    admin = dev_accounts(1)[0]
    async with await connect_when_ready(plan, admin, proc) as client:
        chain["contract"] = await deploy_and_fund(client, addresses)


def _start_node(
    plan: Plan, chain: dict[str, Any], supervisor: Supervisor, state_file: Path | None
) -> Process:
    proc = supervisor.start(
        "anvil",
        anvil_command(plan.chain_host, plan.chain_port, plan.params.block_time, state_file),
        namespace=None,
        run_dir=plan.chain_dir,
    )
    chain.update({"ws_url": plan.chain_ws_url, "pid": proc.pid})
    if state_file is not None:
        chain["state_file"] = str(state_file)
    return proc


async def _has_code(plan: Plan, proc: Process, address: str) -> bool:
    admin = dev_accounts(1)[0]
    async with await connect_when_ready(plan, admin, proc) as client:
        code = await client.w3.eth.get_code(address)  # type: ignore[arg-type]
    return len(code) > 0


async def _stop_pid(supervisor: Supervisor, pid: int | None, *, kill: bool) -> None:
    if not pid or not is_tagged(pid, supervisor.testbed) or not is_alive(pid):
        return
    if kill:
        # SIGKILL: no final state dump; the last interval's blocks are lost.
        os.kill(pid, signal.SIGKILL)
    await stop(pid, timeout=supervisor.stop_timeout)


async def stop_node(testbed: Testbed, *, kill: bool = False) -> None:
    """Stops the chain node of ``testbed`` (SIGTERM: it dumps its state
    first; ``kill``: SIGKILL, as a crash). Its record stays: a restart brings
    the same chain back on the same port."""
    state = _chain_state(testbed)
    await _stop_pid(testbed.supervisor, state.chain.get("pid"), kill=kill)


async def restart_node(testbed: Testbed, *, reset: bool = False, kill: bool = False) -> None:
    """Stops the chain node of ``testbed`` if it runs (``kill``: SIGKILL) and
    starts it again on the same port: with its saved chain, or with
    ``reset`` a fresh one (new genesis, no contract: what the MEFs must
    notice and refuse to act on). Returns once the node answers."""
    state = _chain_state(testbed)
    chain = state.chain
    await _stop_pid(testbed.supervisor, chain.get("pid"), kill=kill)
    plan = make_plan(testbed.name, testbed.state_dir, testbed.underlay, _params(state.params))
    state_file = plan.chain_dir / STATE_FILE
    if reset:
        state_file.unlink(missing_ok=True)
    proc = _start_node(plan, chain, testbed.supervisor, state_file)
    StateFile(testbed.state_path).save(state)
    admin = dev_accounts(1)[0]
    async with await connect_when_ready(plan, admin, proc):
        pass


def _chain_state(testbed: Testbed) -> TestbedState:
    state = testbed.load_state()
    if state is None or not state.chain.get("ws_url"):
        raise FailedPrecondition(f"testbed {testbed.name!r} has no chain")
    return state


def _params(raw: dict[str, Any]) -> Params:
    fields = {**raw, "roles": tuple(raw["roles"])}
    return Params(**fields)


__all__ = [
    "STATE_INTERVAL_S",
    "anvil_command",
    "connect_when_ready",
    "deploy_and_fund",
    "ensure_chain",
    "restart_node",
    "stop_node",
    "wait_for_port",
    "write_keystore",
]
