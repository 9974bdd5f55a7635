"""Reverts as domain errors.

web3 raises ``ContractCustomError`` / ``ContractLogicError`` /
``ContractPanicError`` with the revert data when ``eth_call`` or
``eth_estimateGas`` reverts; web3 has no decoder for custom errors, so the
selector table here is built from the ``error`` entries of the contract's ABI
(eth_utils signatures, eth_abi decoding — the codec web3 uses).

A ``status_for`` hook maps error names to domain classes: ``NotMember``
mapped to :class:`~mecfed.errors.PermissionDenied` raises an exception that
is *both* a PermissionDenied and a :class:`ContractRevert`. Unmapped reverts
are a :class:`~mecfed.errors.FailedPrecondition`: the contract refused the
state transition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_utils import function_abi_to_4byte_selector, to_checksum_address
from eth_utils.abi import collapse_if_tuple
from hexbytes import HexBytes

from mecfed.errors import FailedPrecondition, MecfedError

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

    ``error_name``: the custom error's name, ``"Error"`` for a string reason,
    ``"Panic"`` for a panic code, ``"OutOfGas"``, or ``"Unknown"`` when the
    data can't be decoded. ``error_args``: its arguments by name (positional
    names ``"0"``, ``"1"``... where the ABI has none); ``revert_args`` the
    same values as a tuple. (``args`` belongs to BaseException.)
    """

    http_status = 412

    def __init__(
        self,
        error_name: str,
        error_args: Mapping[str, Any] | None = None,
        message: str = "",
        *,
        data: bytes = b"",
        tx_hash: str | None = None,
    ) -> None:
        error_args = dict(error_args or {})
        super().__init__(message or f"reverted: {error_name}{tuple(error_args.values())!r}")
        self.error_name = error_name
        self.error_args = error_args
        self.data = data
        self.tx_hash = tx_hash

    @property
    def revert_args(self) -> tuple[Any, ...]:
        return tuple(self.error_args.values())


_mapped_classes: dict[type[MecfedError], type[ContractRevert]] = {}


def revert_class_for(status: type[MecfedError] | None) -> type[ContractRevert]:
    """A ContractRevert subclass that also is ``status`` (cached per status);
    ``None`` means unmapped, which is a FailedPrecondition."""
    status = status or FailedPrecondition
    if issubclass(ContractRevert, status):
        return ContractRevert
    cls = _mapped_classes.get(status)
    if cls is None:
        cls = type(
            f"{status.__name__}Revert",
            (ContractRevert, status),
            {"http_status": status.http_status, "__module__": __name__},
        )
        _mapped_classes[status] = cls
    return cls


class ErrorDecoder:
    """Selector table built from the ``error`` entries of one or more ABIs."""

    def __init__(self, *abis: Sequence[Mapping[str, Any]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for entry in abi:
                if entry.get("type") != "error":
                    continue
                inputs = entry.get("inputs", [])
                types = [collapse_if_tuple(dict(i)) for i in inputs]
                names = [i.get("name") or str(n) for n, i in enumerate(inputs)]
                selector = function_abi_to_4byte_selector(cast(Any, dict(entry)))
                self._errors[selector] = (entry["name"], types, names)

    def decode(self, data: bytes) -> tuple[str, dict[str, Any], str]:
        """``(error_name, args by name, human message)`` for revert ``data``."""
        selector, body = data[:4], data[4:]
        try:
            if selector == ERROR_SELECTOR:
                (reason,) = abi_decode(["string"], body)
                return "Error", {"reason": reason}, reason
            if selector == PANIC_SELECTOR:
                (code,) = abi_decode(["uint256"], body)
                what = PANIC_REASONS.get(code, "unknown panic")
                return "Panic", {"code": code}, f"panic 0x{code:02x}: {what}"
            if selector in self._errors:
                name, types, names = self._errors[selector]
                values = [
                    to_checksum_address(v) if t == "address" else v
                    for t, v in zip(types, abi_decode(types, body), strict=True)
                ]
                args = dict(zip(names, values, strict=True))
                shown = ", ".join(f"{n}={_show(v)}" for n, v in args.items())
                return name, args, f"{name}({shown})"
        except Exception as exc:  # malformed data: report rather than crash
            return "Unknown", {}, f"undecodable revert data 0x{data.hex()}: {exc}"
        if not data:
            return "Unknown", {}, "reverted without reason"
        return "Unknown", {}, f"unknown custom error 0x{selector.hex()} (data 0x{data.hex()})"

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
        cls = revert_class_for(status_for(name) if status_for else None)
        text = f"{context}: {message}" if context else message
        return cls(name, args, text, data=data, tx_hash=tx_hash)


def revert_data_of(exc: BaseException) -> bytes | None:
    """The revert data carried by a web3 contract error (``.data``): a hex
    string from anvil/geth/Besu, sometimes nested as ``{"data": "0x..."}``.
    ``None`` when there is none."""
    data = getattr(exc, "data", None)
    if isinstance(data, Mapping):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes(HexBytes(data))
        except ValueError:
            return None
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    return None


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and not value.startswith("0x"):
        return repr(value)  # quote free text, not addresses
    return str(value)
