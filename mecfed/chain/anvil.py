"""Local anvil node for tests, the demo and the testbed.

anvil comes from the pinned ``@foundry-rs/anvil`` npm package (``make
install``). Its dev accounts are the well-known "test ... junk" mnemonic
accounts: throwaway keys, never to be used on a real network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from mecfed.chain.provider import MultiplexProvider
from mecfed.errors import FailedPrecondition, Unavailable

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ANVIL_RELATIVE = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_CHAIN_ID = 1337


def anvil_binary(repo_root: Path = REPO_ROOT) -> Path:
    path = repo_root / ANVIL_RELATIVE
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FailedPrecondition(f"anvil not found at {path}; run `make install` first")
    return path


def dev_accounts(count: int) -> list[LocalAccount]:
    """The first ``count`` accounts of anvil's default mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        for i in range(count)
    ]


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: SIGKILL anvil if this process dies
    # without stopping it (PR_SET_PDEATHSIG = 1), so no orphan survives.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class Anvil:
    """``async with Anvil(...) as node`` (or ``await node.start()`` /
    ``await node.stop()``)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        block_time: float | None = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        accounts: int = 10,
        balance_eth: int = 10_000,
        extra_args: list[str] | None = None,
        startup_timeout: float = 20.0,
        binary: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.block_time = block_time
        self.chain_id = chain_id
        self.accounts = accounts
        self.balance_eth = balance_eth
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.binary = binary
        self._proc: asyncio.subprocess.Process | None = None
        self._log_file: Any = None
        self._dev_accounts: list[LocalAccount] | None = None

    # -- addresses ----------------------------------------------------------

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._netloc}"

    @property
    def http_url(self) -> str:
        return f"http://{self._netloc}"

    @property
    def dev_accounts(self) -> list[LocalAccount]:
        if self._dev_accounts is None:
            self._dev_accounts = dev_accounts(self.accounts)
        return self._dev_accounts

    @property
    def dev_keys(self) -> list[str]:
        """Private keys (0x-hex) of the dev accounts."""
        return [HexBytes(a.key).to_0x_hex() for a in self.dev_accounts]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- lifecycle ----------------------------------------------------------

    def _command(self) -> list[str]:
        cmd = [
            str(self.binary or anvil_binary()),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(self.chain_id),
            "--accounts",
            str(self.accounts),
            "--balance",
            str(self.balance_eth),
            "--silent",
        ]
        if self.block_time is not None:
            cmd += ["--block-time", f"{self.block_time:g}"]
        return cmd + self.extra_args

    async def start(self) -> Anvil:
        if self._proc is not None:
            raise FailedPrecondition("anvil already started")
        fixed_port = self.port is not None
        for attempt in range(3):  # a picked free port can be taken meanwhile
            if not fixed_port:
                self.port = free_port(self.host)
            self._log_file = tempfile.TemporaryFile()
            self._proc = await asyncio.create_subprocess_exec(
                *self._command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=self._log_file,
                preexec_fn=_die_with_parent,
            )
            try:
                await self._wait_ready()
                log.info("anvil pid %s ready at %s", self._proc.pid, self.ws_url)
                return self
            except Unavailable as exc:
                output = self._output()
                await self.stop()
                if fixed_port or attempt == 2 or "in use" not in output.lower():
                    raise Unavailable(
                        f"anvil did not start on {self.ws_url}: {exc.message}: {output[-2000:]}"
                    ) from exc
        raise AssertionError("unreachable")

    async def _wait_ready(self) -> None:
        """Polls ``eth_chainId`` over WebSocket with backoff until it answers."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.02
        last: BaseException | None = None
        while True:
            if self._proc.returncode is not None:
                raise Unavailable(f"anvil exited with {self._proc.returncode}")
            provider = MultiplexProvider(self.ws_url, request_timeout=2.0)
            try:
                async with asyncio.timeout(2.0):
                    await provider.connect()
                    reply = await provider.make_request("eth_chainId", [])  # type: ignore[arg-type]
                if int(reply["result"], 16) == self.chain_id:
                    return
            except Exception as exc:  # refused while binding, handshake errors, timeouts
                last = exc
            finally:
                with contextlib.suppress(Exception):
                    await provider.disconnect()
            if time.monotonic() > deadline:
                raise Unavailable(f"anvil not answering at {self.ws_url}: {last!r}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _output(self) -> str:
        if self._log_file is None:
            return ""
        self._log_file.seek(0)
        return self._log_file.read().decode(errors="replace")

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __aenter__(self) -> Anvil:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- helpers ------------------------------------------------------------

    async def fund(self, address: str, wei: int, *, from_index: int = 0) -> None:
        """Sends ``wei`` to ``address`` from a dev account (signed locally)."""
        from mecfed.chain.client import ChainClient

        client = await ChainClient.connect(self.ws_url, self.dev_accounts[from_index])
        try:
            await client.transfer(address, wei)
        finally:
            await client.close()
