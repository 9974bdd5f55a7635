"""The testbed's local chain (chain backend): an anvil node on the underlay
gateway, one encrypted keystore per MEC system, the Federation contract with
every system on its allowlist, and funds for gas and escrow.

anvil runs as a supervised testbed process (tagged, in the root namespace),
not through :class:`mecfed.chain.anvil.Anvil`, whose node dies with the
process that started it: ``mecfed testbed up`` returns and leaves the
testbed running.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount

from mecfed.chain.anvil import DEFAULT_CHAIN_ID, anvil_binary, dev_accounts
from mecfed.chain.client import ChainClient
from mecfed.chain.federation import FederationContract, MembershipPolicy
from mecfed.chain.keystore import create_keystore
from mecfed.errors import Unavailable
from mecfed.testbed.plan import Plan, SystemPlan
from mecfed.testbed.supervisor import NotHealthy, Process, Supervisor

DEV_ACCOUNTS = 10
DEV_BALANCE_ETH = 10_000
FUNDING_WEI = 100 * 10**18  # per system: gas and escrow for many federations
# Lighter scrypt than the production default: N systems unlock their keys
# at once on a 2-core machine.
KEYSTORE_SCRYPT_N = 2**14
READY_TIMEOUT = 30.0


def anvil_command(host: str, port: int, block_time: float | None) -> list[str]:
    """argv of the chain node: the pinned anvil with its dev accounts (the
    well-known test mnemonic; the first one deploys and funds)."""
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
    ``ws_url``, ``pid``, ``contract``) names a node that still runs. The
    node's pid is recorded (and saved) before the contract is deployed."""
    if supervisor.running("anvil", chain.get("pid"), plan.chain_dir / "anvil.log"):
        return
    proc = supervisor.start(
        "anvil",
        anvil_command(plan.chain_host, plan.chain_port, plan.params.block_time),
        namespace=None,
        run_dir=plan.chain_dir,
    )
    chain.clear()
    chain.update({"ws_url": plan.chain_ws_url, "pid": proc.pid})
    save()
    addresses = [await asyncio.to_thread(write_keystore, s) for s in plan.systems]
    admin = dev_accounts(1)[0]
    async with await connect_when_ready(plan, admin, proc) as client:
        chain["contract"] = await deploy_and_fund(client, addresses)


__all__ = [
    "anvil_command",
    "connect_when_ready",
    "deploy_and_fund",
    "ensure_chain",
    "wait_for_port",
    "write_keystore",
]
