"""Decoding of revert data into :class:`ContractRevert` errors.

A reverted call returns ABI-encoded data: a Solidity custom error
(``selector ++ args``), ``Error(string)`` from ``require``/``revert("...")``
or ``Panic(uint256)`` from failed asserts and arithmetic. Callers map error
names to domain errors with a ``status_for`` hook, so e.g. ``NotMember``
becomes a :class:`~mecfed.errors.PermissionDenied` that is *also* a
:class:`ContractRevert` (both ``except`` clauses work).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address
from eth_utils.abi import collapse_if_tuple

from mecfed.errors import MecfedError

ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

PANIC_REASONS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to zero-initialised function",
}

StatusFor = Callable[[str], type[MecfedError] | None]


class ContractRevert(MecfedError):
    """A contract call or transaction reverted.

    ``error_name`` is the custom error name, ``"Error"`` for a string reason,
    ``"Panic"`` for a panic code, ``"Unknown"`` when the data can't be decoded.
    Unmapped reverts are a failed precondition: the contract refused the
    state transition.
    """

    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 412

    def __init__(
        self,
        error_name: str,
        args: tuple[Any, ...] = (),
        message: str = "",
        *,
        data: bytes = b"",
        tx_hash: str | None = None,
    ) -> None:
        super().__init__(message or f"reverted: {error_name}{args!r}")
        self.error_name = error_name
        self.args_ = args  # ``args`` is taken by BaseException
        self.data = data
        self.tx_hash = tx_hash

    @property
    def revert_args(self) -> tuple[Any, ...]:
        return self.args_


_mapped_classes: dict[type[MecfedError], type[ContractRevert]] = {}


def revert_class_for(status: type[MecfedError] | None) -> type[ContractRevert]:
    """A ContractRevert subclass that also is ``status`` (cached per status)."""
    if status is None or issubclass(ContractRevert, status):
        return ContractRevert
    cls = _mapped_classes.get(status)
    if cls is None:
        cls = type(
            f"{status.__name__}Revert",
            (ContractRevert, status),
            {"code": status.code, "http_status": status.http_status},
        )
        _mapped_classes[status] = cls
    return cls


class ErrorDecoder:
    """Selector table built from the ``error`` entries of one or more ABIs."""

    def __init__(self, abis: Sequence[Sequence[dict[str, Any]]] = ()) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            self.add_abi(abi)

    def add_abi(self, abi: Sequence[dict[str, Any]]) -> None:
        for entry in abi:
            if entry.get("type") != "error":
                continue
            inputs = entry.get("inputs", [])
            types = [collapse_if_tuple(i) for i in inputs]
            names = [i.get("name", "") for i in inputs]
            selector = keccak(text=f"{entry['name']}({','.join(types)})")[:4]
            self._errors[selector] = (entry["name"], types, names)

    def decode(self, data: bytes) -> tuple[str, tuple[Any, ...], str]:
        """``(error_name, args, human message)`` for revert ``data``."""
        selector, body = data[:4], data[4:]
        try:
            if selector == ERROR_SELECTOR:
                (reason,) = abi_decode(["string"], body)
                return "Error", (reason,), reason
            if selector == PANIC_SELECTOR:
                (code,) = abi_decode(["uint256"], body)
                what = PANIC_REASONS.get(code, "unknown panic")
                return "Panic", (code,), f"panic 0x{code:02x}: {what}"
            if selector in self._errors:
                name, types, names = self._errors[selector]
                args = tuple(
                    to_checksum_address(v) if t == "address" else v
                    for t, v in zip(types, abi_decode(types, body), strict=True)
                )
                shown = ", ".join(
                    f"{n}={_show(v)}" if n else _show(v) for n, v in zip(names, args, strict=True)
                )
                return name, args, f"{name}({shown})"
        except Exception as exc:  # malformed data: report rather than crash
            return "Unknown", (), f"undecodable revert data 0x{data.hex()}: {exc}"
        if not data:
            return "Unknown", (), "reverted without reason"
        return "Unknown", (), f"unknown custom error 0x{selector.hex()} (data 0x{data.hex()})"

    def to_exception(
        self,
        data: bytes,
        status_for: StatusFor | None = None,
        *,
        context: str = "",
        tx_hash: str | None = None,
        fallback_message: str = "",
    ) -> ContractRevert:
        name, args, message = self.decode(data)
        if name == "Unknown" and not data and fallback_message:
            message = fallback_message
        status = status_for(name) if status_for else None
        cls = revert_class_for(status)
        text = f"{context}: {message}" if context else message
        return cls(name, args, text, data=data, tx_hash=tx_hash)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and not value.startswith("0x"):
        return repr(value)  # quote free text, not addresses
    return str(value)


def revert_data_of(error: Any) -> bytes | None:
    """Revert data from a JSON-RPC error object, across node flavours.

    anvil/geth: ``{"code": 3, "data": "0x..."}``; Besu: ``data`` holds the
    hex string as well; some nodes nest it as ``{"data": {"data": "0x..."}}``.
    ``None`` when the error isn't a revert with data.
    """
    if not isinstance(error, dict):
        return None
    data = error.get("data")
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def is_revert_error(error: Any) -> bool:
    """Whether a JSON-RPC error reports an execution revert."""
    if not isinstance(error, dict):
        return False
    if revert_data_of(error) is not None:
        return True
    message = str(error.get("message", "")).lower()
    return "revert" in message
