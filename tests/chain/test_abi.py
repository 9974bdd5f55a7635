"""mecfed.chain.abi against web3.py as an independent reference: the same
calldata for every Federation function we call, the same decoded events."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.events import get_event_data

from mecfed.chain import federation as fedc
from mecfed.chain.abi import Contract, EventDecoder, constructor_data, signature
from mecfed.chain.subscriptions import normalize_log

ADDR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ALICE = to_checksum_address("0x70997970c51812dc3a010c7d01b50e79c8dc79c8")
SID = bytes(range(32))

CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("announce", (10**18, 2, 15, 300, b"\x01\x02 requirements")),
    ("bid", (SID, 12345, b"sealed" * 20)),
    ("register", ("mef-1", b"\x04" + b"\x11" * 64)),
    ("isMember", (ALICE,)),
    ("stateOf", (SID,)),
    ("stateOf", ("0x" + SID.hex(),)),  # hex strings for bytes, as callers pass ids
    ("serviceOf", (SID,)),
    ("confirmDeployment", (SID, b"")),
    ("withdraw", ()),
]


@pytest.fixture(scope="module")
def reference() -> Any:
    return Web3().eth.contract(address=ADDR, abi=fedc.abi())


@pytest.mark.parametrize(("name", "args"), CALLS)
def test_calldata_matches_web3(reference: Any, name: str, args: tuple[Any, ...]) -> None:
    ours = Contract(ADDR, fedc.abi()).functions.__getattr__(name)(*args).calldata()
    theirs = getattr(reference.functions, name)(*args)._encode_transaction_data()
    assert ours == theirs


def test_constructor_data_matches_web3() -> None:
    art = fedc.artifact()
    theirs = (
        Web3()
        .eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        .constructor(fedc.ALLOWLIST, [ALICE])
        .data_in_transaction
    )
    assert constructor_data(art["abi"], art["bytecode"], fedc.ALLOWLIST, [ALICE]) == theirs


def test_wrong_arity_and_unknown_function_are_clear_errors() -> None:
    c = Contract(ADDR, fedc.abi())
    with pytest.raises(TypeError, match="bid\\(\\) takes 3 arguments, got 1"):
        c.functions.bid(SID).calldata()
    with pytest.raises(AttributeError, match="no function 'nope'"):
        c.functions.nope  # noqa: B018


def _event_entry(name: str) -> dict[str, Any]:
    return next(e for e in fedc.abi() if e.get("type") == "event" and e["name"] == name)


def _raw_log(entry: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A node-shaped log of ``entry`` carrying ``values``."""
    inputs = entry["inputs"]
    topics = ["0x" + keccak(text=signature(entry)).hex()]
    for i in (i for i in inputs if i["indexed"]):
        topics.append("0x" + encode([i["type"]], [values[i["name"]]]).hex())
    plain = [i for i in inputs if not i["indexed"]]
    data = encode([i["type"] for i in plain], [values[i["name"]] for i in plain])
    return {
        "address": ADDR.lower(),
        "topics": topics,
        "data": "0x" + data.hex(),
        "blockNumber": "0x10",
        "blockHash": "0x" + "ab" * 32,
        "logIndex": "0x2",
        "transactionIndex": "0x1",
        "transactionHash": "0x" + "cd" * 32,
        "removed": False,
    }


def _sample(entry: dict[str, Any]) -> dict[str, Any]:
    sample = {"address": ALICE, "bytes32": SID, "bytes": b"payload", "string": "mef-x"}
    sample["bool"] = True
    return {
        i["name"]: 7 + n if i["type"].startswith("uint") else sample[i["type"]]
        for n, i in enumerate(entry["inputs"])
    }


EVENTS = sorted(e["name"] for e in fedc.abi() if e.get("type") == "event")


@pytest.mark.parametrize("name", EVENTS)
def test_events_decode_like_web3(name: str) -> None:
    entry = _event_entry(name)
    raw = _raw_log(entry, _sample(entry))
    ours = EventDecoder(fedc.abi())(normalize_log(raw))
    theirs = get_event_data(Web3().codec, entry, normalize_log(raw))
    assert ours["event"] == theirs["event"] == name
    assert dict(ours["args"]) == dict(theirs["args"])
    assert ours.args == ours["args"]  # attribute access, as web3's AttributeDict
    assert (ours["blockNumber"], ours["logIndex"]) == (theirs["blockNumber"], theirs["logIndex"])
    assert HexBytes(ours["transactionHash"]) == HexBytes(theirs["transactionHash"])


def test_log_of_an_unknown_event_passes_through() -> None:
    raw = _raw_log(_event_entry(EVENTS[0]), _sample(_event_entry(EVENTS[0])))
    raw["topics"][0] = "0x" + "00" * 32
    out = EventDecoder(fedc.abi())(normalize_log(raw))
    assert "args" not in out and out["logIndex"] == 2
