"""Contract calls and events from a Solidity ABI, with eth_abi alone.

The MEF needs four things from an ABI: calldata for a function, the
constructor's calldata, the return values of a call, and decoded events.
web3.py's contract layer does the same but brings an HTTP stack and
pydantic models with it (about 18 MB per process); this is the part we use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from eth_utils.abi import collapse_if_tuple
from hexbytes import HexBytes

ABI = Sequence[dict[str, Any]]


class AttrDict(dict[str, Any]):
    """A dict whose keys also read as attributes (``event.args.price``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _types(params: Sequence[dict[str, Any]]) -> list[str]:
    return [collapse_if_tuple(p) for p in params]


def signature(entry: dict[str, Any]) -> str:
    """``name(type,...)`` of a function, error or event entry."""
    return f"{entry['name']}({','.join(_types(entry.get('inputs', [])))})"


def selector(entry: dict[str, Any]) -> bytes:
    return keccak(text=signature(entry))[:4]


def _arg(abi_type: str, value: Any) -> Any:
    """Accepts hex strings for ``bytes``/``bytesN`` values, as web3 does."""
    if abi_type.endswith("]") and isinstance(value, list | tuple):
        inner = abi_type[: abi_type.rindex("[")]
        return [_arg(inner, v) for v in value]
    if abi_type.startswith("bytes") and isinstance(value, str):
        return bytes(HexBytes(value))
    return value


def _checksummed(types: Sequence[str], values: Sequence[Any]) -> list[Any]:
    # eth_abi returns lower-case addresses; web3 (and our callers) use checksums.
    return [
        to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
    ]


@dataclass(frozen=True)
class ContractFunction:
    """One call of a contract function with its arguments bound."""

    address: str
    abi: dict[str, Any]
    contract_abi: ABI
    args: tuple[Any, ...]

    @property
    def fn_name(self) -> str:
        return str(self.abi["name"])

    def calldata(self) -> str:
        types = _types(self.abi.get("inputs", []))
        if len(types) != len(self.args):
            raise TypeError(f"{self.fn_name}() takes {len(types)} arguments, got {len(self.args)}")
        args = [_arg(t, v) for t, v in zip(types, self.args, strict=True)]
        return "0x" + (selector(self.abi) + abi_encode(types, args)).hex()

    def decode_output(self, data: bytes | str) -> Any:
        """The call's return value: ``None``, one value, or a tuple."""
        outputs = self.abi.get("outputs", [])
        if not outputs:
            return None
        types = _types(outputs)
        values = abi_decode(types, HexBytes(data))
        return values[0] if len(values) == 1 else tuple(values)


class _Functions:
    def __init__(self, contract: Contract) -> None:
        self._contract = contract

    def __getattr__(self, name: str) -> Any:
        entry = self._contract.function_abi(name)

        def bind(*args: Any) -> ContractFunction:
            return ContractFunction(self._contract.address, entry, self._contract.abi, args)

        return bind


class Contract:
    """A deployed contract: ``contract.functions.name(*args)`` binds a call.

    Overloaded functions are not supported (the Federation contract has
    none); asking for one raises at lookup."""

    def __init__(self, address: str, abi: ABI) -> None:
        self.address = to_checksum_address(address)
        self.abi = list(abi)
        self.functions = _Functions(self)

    def function_abi(self, name: str) -> dict[str, Any]:
        found = [e for e in self.abi if e.get("type") == "function" and e.get("name") == name]
        if len(found) != 1:
            raise AttributeError(
                f"contract has {'no' if not found else 'an overloaded'} function {name!r}"
            )
        return found[0]


def constructor_data(abi: ABI, bytecode: str, *args: Any) -> str:
    """Deployment calldata: the bytecode followed by the encoded arguments."""
    ctor = next((e for e in abi if e.get("type") == "constructor"), {"inputs": []})
    types = _types(ctor.get("inputs", []))
    if len(types) != len(args):
        raise TypeError(f"constructor takes {len(types)} arguments, got {len(args)}")
    code = bytes(HexBytes(bytecode))
    values = [_arg(t, v) for t, v in zip(types, args, strict=True)]
    return "0x" + (code + abi_encode(types, values)).hex()


class EventDecoder:
    """Decodes logs with the ``event`` entries of a contract ABI into
    ``{"event", "args", "address", "blockNumber", ...}`` (attribute access
    too). Indexed dynamic values (strings, bytes, arrays) arrive as their
    keccak hash, as in every Ethereum client. Logs of unknown events are
    returned as they are."""

    def __init__(self, abi: ABI) -> None:
        self._events: dict[bytes, dict[str, Any]] = {}
        for entry in abi:
            if entry.get("type") == "event" and not entry.get("anonymous"):
                self._events[keccak(text=signature(entry))] = entry

    def topic_of(self, event_name: str) -> str:
        for topic, entry in self._events.items():
            if entry["name"] == event_name:
                return "0x" + topic.hex()
        raise KeyError(f"no event {event_name} in ABI")

    def __call__(self, log_entry: dict[str, Any]) -> AttrDict:
        topics = log_entry["topics"]
        entry = self._events.get(bytes(topics[0])) if topics else None
        if entry is None:
            return AttrDict(log_entry)
        inputs = entry.get("inputs", [])
        indexed = [i for i in inputs if i.get("indexed")]
        plain = [i for i in inputs if not i.get("indexed")]
        if len(topics) - 1 != len(indexed):
            raise ValueError(
                f"{entry['name']} log has {len(topics) - 1} indexed topics, the ABI {len(indexed)}"
            )
        args: dict[str, Any] = {}
        for param, topic in zip(indexed, topics[1:], strict=True):
            t = collapse_if_tuple(param)
            dynamic = t in ("string", "bytes") or t.endswith("]") or t.startswith("(")
            args[param["name"]] = (
                bytes(topic) if dynamic else _checksummed([t], abi_decode([t], bytes(topic)))[0]
            )
        plain_types = _types(plain)
        values = abi_decode(plain_types, bytes(log_entry["data"]))
        for param, value in zip(plain, _checksummed(plain_types, values), strict=True):
            args[param["name"]] = value
        return AttrDict(
            event=entry["name"],
            args=AttrDict(args),
            address=log_entry["address"],
            blockNumber=log_entry["blockNumber"],
            blockHash=log_entry["blockHash"],
            logIndex=log_entry["logIndex"],
            transactionIndex=log_entry["transactionIndex"],
            transactionHash=log_entry["transactionHash"],
        )
