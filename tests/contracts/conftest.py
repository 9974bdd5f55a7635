"""Fixtures for the Federation contract tests: a real anvil on loopback, the committed artifact.

One anvil per test session (guaranteed teardown); every test starts from an EVM snapshot taken
right after a standard ALLOWLIST federation with 8 registered members was deployed, so tests are
isolated and fast. Test-only contracts (contracts/test/*.sol) are compiled through the same build
script (`scripts/build_contract.sh --test DIR`).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_keys import keys
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
ARTIFACT = ROOT / "mecfed/chain/data/Federation.json"
BUILD = ROOT / "scripts/build_contract.sh"

ALLOWLIST, MAJORITY = 0, 1
# State enum
NONE, OPEN, AWARDED, DEPLOYED, TERMINATED, CANCELLED, CLOSING, ACKNOWLEDGED = range(8)
ORDER, DEPLOY, CHALLENGE = 60, 120, 300  # the windows `announce` uses unless told
ETHER = 10**18
PRICE = 10**15  # realistic-ish price unit (0.001 ETH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Actor:
    name: str
    key: keys.PrivateKey

    @property
    def address(self) -> str:
        return self.key.public_key.to_checksum_address()

    @property
    def pubkey(self) -> bytes:
        """64-byte uncompressed public key without the 0x04 prefix."""
        return self.key.public_key.to_bytes()

    @property
    def pubkey_hex(self) -> str:
        return self.key.public_key.to_hex()


def make_actor(label: str) -> Actor:
    return Actor(label, keys.PrivateKey(keccak(text=f"mecfed-test-{label}")))


class Chain:
    """Thin helper over a sync Web3 connected to anvil (auto-impersonation on)."""

    def __init__(self, w3: Web3, artifact: dict[str, Any], test_artifacts: dict[str, Any]):
        self.w3 = w3
        self.artifact = artifact
        self.test_artifacts = test_artifacts
        self.deployer = make_actor("deployer")
        self.fund(self.deployer.address)
        self._errors: dict[str, str] = {}
        for abi in [artifact["abi"]] + [c["abi"] for c in test_artifacts.values()]:
            for item in abi:
                if item["type"] == "error":
                    sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
                    self._errors["0x" + keccak(text=sig)[:4].hex()] = item["name"]

    # -- plumbing
    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        resp = self.w3.provider.make_request(method, params or [])
        if "error" in resp:
            raise RuntimeError(resp["error"])
        return resp["result"]

    def fund(self, address: str, wei: int = 1000 * ETHER) -> None:
        self.rpc("anvil_setBalance", [address, hex(wei)])

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def advance(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine")

    def set_next_timestamp(self, ts: int) -> None:
        self.rpc("evm_setNextBlockTimestamp", [ts])

    def balance(self, address: str) -> int:
        return self.w3.eth.get_balance(address)

    def deploy(self, name: str | None, *args: Any, sender: Actor | None = None) -> Any:
        art = self.artifact if name is None else self.test_artifacts[name]
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        who = sender or self.deployer
        tx = factory.constructor(*args).transact({"from": who.address})
        rcpt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert rcpt.status == 1
        return self.w3.eth.contract(address=rcpt.contractAddress, abi=art["abi"])

    def send(self, call: Any, sender: Actor | str, value: int = 0) -> Any:
        addr = sender if isinstance(sender, str) else sender.address
        tx = call.transact({"from": addr, "value": value})
        rcpt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert rcpt.status == 1, rcpt
        return rcpt

    def error_name(self, exc: BaseException) -> str:
        data = getattr(exc, "data", None)
        if isinstance(data, dict):
            data = data.get("data")
        if not isinstance(data, str):
            return f"<no revert data: {exc!r}>"
        return self._errors.get(data[:10], f"<unknown {data[:10]}>")

    def reverts(self, error: str, call: Any, sender: Actor | str, value: int = 0) -> str:
        """Assert that sending `call` reverts with custom error `error`; returns revert data."""
        addr = sender if isinstance(sender, str) else sender.address
        with pytest.raises(ContractCustomError) as info:
            call.transact({"from": addr, "value": value})
        assert self.error_name(info.value) == error, (error, info.value)
        data = info.value.data
        return data if isinstance(data, str) else data["data"]

    def reverts_mined(self, error: str, call: Any, sender: Actor | str, value: int = 0) -> Any:
        """Like `reverts`, but the transaction is really mined (no gas estimation), so it runs
        with the block environment set up beforehand (e.g. evm_setNextBlockTimestamp). The revert
        reason is recovered by replaying the call on that block."""
        addr = sender if isinstance(sender, str) else sender.address
        tx = call.transact({"from": addr, "gas": 1_000_000, "value": value})
        rcpt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert rcpt.status == 0, "transaction unexpectedly succeeded"
        with pytest.raises(ContractCustomError) as info:
            call.call({"from": addr, "value": value}, block_identifier=rcpt.blockNumber)
        assert self.error_name(info.value) == error, (error, info.value)
        return rcpt

    def events(self, contract: Any, rcpt: Any, name: str) -> list[Any]:
        return list(getattr(contract.events, name)().process_receipt(rcpt, errors=DISCARD))


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    assert ANVIL.exists(), f"{ANVIL} missing: npm ci"
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(ANVIL),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--auto-impersonate",
            "--silent",
            "--chain-id",
            "31337",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"anvil exited: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("anvil did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def test_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("contracts")
    subprocess.run([str(BUILD), "--test", str(out)], check=True, cwd=ROOT)
    data = json.loads((out / "test-artifacts.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return data


@pytest.fixture(scope="session")
def chain(anvil_url: str, test_artifacts: dict[str, Any]) -> Chain:
    w3 = Web3(Web3.HTTPProvider(anvil_url, request_kwargs={"timeout": 30}))
    deadline = time.monotonic() + 20
    while not w3.is_connected():
        if time.monotonic() > deadline:
            raise RuntimeError("anvil RPC not answering")
        time.sleep(0.05)
    return Chain(w3, json.loads(ARTIFACT.read_text()), test_artifacts)


MEMBER_LABELS = [f"m{i}" for i in range(8)]


@dataclass
class Setup:
    chain: Chain
    fed: Any  # Federation contract (ALLOWLIST, deployer is admin)
    members: list[Actor]  # 8 registered members
    outsider: Actor  # funded, never allowed

    @property
    def admin(self) -> Actor:
        return self.chain.deployer


@pytest.fixture(scope="session")
def _base(chain: Chain) -> tuple[Setup, dict[str, str]]:
    members = [make_actor(label) for label in MEMBER_LABELS]
    outsider = make_actor("outsider")
    for a in [*members, outsider]:
        chain.fund(a.address)
    fed = chain.deploy(None, ALLOWLIST, [m.address for m in members])
    for m in members:
        chain.send(fed.functions.register(f"mef-{m.name}", m.pubkey), m)
    return Setup(chain, fed, members, outsider), {"snap": chain.rpc("evm_snapshot")}


@pytest.fixture
def setup(_base: tuple[Setup, dict[str, str]]) -> Iterator[Setup]:
    """The standard federation, reset to its post-deployment snapshot after every test."""
    s, holder = _base
    try:
        yield s
    finally:
        # evm_revert consumes the snapshot: revert, then take a fresh one of the same state.
        assert s.chain.rpc("evm_revert", [holder["snap"]]) is True
        holder["snap"] = s.chain.rpc("evm_snapshot")


# ---------------------------------------------------------------------------- helpers for tests

# ~150-byte requirements: app spec + W3C traceparent, as the MEF puts them.
REQ = (
    b'{"app":"mecfed-echo","image":"mecfed/echo:1.0","cpu_m":500,"mem_mb":256,"port":7000,'
    b'"tp":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}'
)


def seal(recipient: Actor, endpoint: bytes = b"10.0.0.2:50051", *, compact: bool = False) -> bytes:
    """ECIES-seal an endpoint to a member key. Default eciespy config: 97 bytes of overhead
    (111 bytes for this endpoint). compact=True: the MEF's format (mecfed/chain/sealing.py:
    compressed ephemeral key + 12-byte nonce, 61 bytes of overhead)."""
    from ecies import encrypt
    from ecies.config import Config

    if compact:
        cfg = Config(is_ephemeral_key_compressed=True, symmetric_nonce_length=12)
        return encrypt(b"\x04" + recipient.pubkey, endpoint, config=cfg)
    return encrypt(recipient.pubkey_hex, endpoint)


# What the MEF seals: version byte + compact JSON endpoint details (33 bytes) -> 94 bytes sealed.
MEF_ENDPOINT = b'\x01{"host":"10.0.0.2","port":50051}'


def announce(
    s: Setup,
    consumer: Actor,
    max_price: int = 10 * PRICE,
    k: int = 2,
    bidding: int = 600,
    order: int = ORDER,
    deploy: int = DEPLOY,
    challenge: int = CHALLENGE,
    req: bytes = REQ,
) -> tuple[bytes, Any]:
    rcpt = s.chain.send(
        s.fed.functions.announce(max_price, k, bidding, order, deploy, challenge, req),
        consumer,
        value=max_price,
    )
    (ev,) = s.chain.events(s.fed, rcpt, "ServiceAnnounced")
    return ev.args.id, rcpt


def bond_due(s: Setup, provider: Actor, sid: bytes) -> int:
    """The bond a bid of `provider` on `sid` must carry (0 while it holds one)."""
    *_, bonded = s.fed.functions.bidOf(sid, provider.address).call()
    return 0 if bonded else s.fed.functions.serviceOf(sid).call()[2]


def place_bid(
    s: Setup, provider: Actor, sid: bytes, price: int, consumer: Actor | None = None
) -> Any:
    endpoint = seal(consumer) if consumer else b"\x11" * 111
    return s.chain.send(
        s.fed.functions.bid(sid, price, endpoint), provider, value=bond_due(s, provider, sid)
    )


SERVICE_FIELDS = [
    "consumer",
    "maxPrice",
    "bond",
    "k",
    "bidCount",
    "state",
    "deadline",
    "closeBlock",
    "orderDeadline",
    "confirmDeadline",
    "challengeDeadline",
    "winner",
    "bestPrice",
    "round",
    "biddingWindow",
    "orderWindow",
    "deployWindow",
    "challengeWindow",
    "ordered",
]


def service(s: Setup, sid: bytes) -> dict[str, Any]:
    v = s.fed.functions.serviceOf(sid).call()
    return dict(zip(SERVICE_FIELDS, v, strict=True))
