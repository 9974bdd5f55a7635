"""Pure units: log dedup, revert decoding (no node needed)."""

from __future__ import annotations

from typing import Any

from eth_abi import encode
from eth_utils import keccak

from mecfed.chain.revert import ContractRevert, ErrorDecoder, revert_class_for
from mecfed.chain.subscriptions import LogStream
from mecfed.errors import FailedPrecondition, PermissionDenied

ABI = [
    {
        "type": "error",
        "name": "NotMember",
        "inputs": [{"name": "who", "type": "address"}, {"name": "id", "type": "bytes32"}],
    },
    {"type": "error", "name": "WrongState", "inputs": [{"name": "state", "type": "uint8"}]},
]


def test_removed_logs_and_duplicates_are_skipped() -> None:
    stream = LogStream("ws://unused", None)

    def raw(block: int, index: int, removed: bool = False) -> dict[str, Any]:
        return {
            "address": "0x" + "11" * 20,
            "topics": ["0x" + "22" * 32],
            "data": "0x",
            "blockNumber": hex(block),
            "blockHash": "0x" + "33" * 32,
            "logIndex": hex(index),
            "transactionIndex": "0x0",
            "transactionHash": "0x" + "44" * 32,
            "removed": removed,
        }

    assert stream._accept(raw(5, 0)) is not None
    assert stream._accept(raw(5, 0)) is None  # duplicate
    assert stream._accept(raw(5, 1, removed=True)) is None  # reorged out
    assert stream._accept(raw(5, 1)) is not None
    assert stream._accept(raw(4, 9)) is None  # older than the cursor
    assert stream.last == (5, 1) and stream.cursor == 5


def test_custom_error_decoding_and_mapping() -> None:
    decoder = ErrorDecoder([ABI])
    who = "0x" + "ab" * 20
    data = keccak(text="NotMember(address,bytes32)")[:4] + encode(
        ["address", "bytes32"], [who, b"\x01" * 32]
    )
    name, args, message = decoder.decode(data)
    assert name == "NotMember" and args[1] == b"\x01" * 32
    assert message.startswith("NotMember(who=0x")
    mapping = {"NotMember": PermissionDenied, "WrongState": FailedPrecondition}
    err = decoder.to_exception(data, mapping.get, context="join")
    assert isinstance(err, PermissionDenied) and isinstance(err, ContractRevert)
    assert err.code == PermissionDenied.code and err.message.startswith("join: NotMember")
    assert revert_class_for(PermissionDenied) is type(err)  # cached class


def test_undecodable_revert_data() -> None:
    decoder = ErrorDecoder([ABI])
    assert decoder.decode(b"")[0] == "Unknown"
    name, _, message = decoder.decode(bytes.fromhex("deadbeef"))
    assert name == "Unknown" and "deadbeef" in message
