"""Sealed (ECIES) payloads and signed off-chain messages.

Endpoint details go on chain encrypted to the recipient MEF's account key:
``seal`` with the 64-byte public key anyone can recover from that account's
signatures, ``open_sealed`` with its private key. Off-chain notices handed
over gRPC carry an EIP-191 signature checked against on-chain addresses.
"""

from __future__ import annotations

import json
from typing import Any

import ecies
from ecies.config import Config
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from mecfed.errors import InvalidArgument, PermissionDenied

# secp256k1 + AES-256-GCM as eciespy's default, but with a compressed
# ephemeral key (33 instead of 65 bytes) and the standard 12-byte GCM nonce:
# blobs go into calldata, so every byte costs gas. Both ends use this module.
_ECIES = Config(is_ephemeral_key_compressed=True, symmetric_nonce_length=12)

_ENDPOINT_V1 = b"\x01"
MAX_ENDPOINT_BYTES = 4096


def pubkey_of(account: LocalAccount) -> bytes:
    """64-byte uncompressed public key without the 0x04 prefix
    (``keccak(pubkey)[12:]`` is the account address)."""
    return keys.PrivateKey(bytes(account.key)).public_key.to_bytes()


def address_of_pubkey(pubkey64: bytes) -> str:
    _check_pubkey(pubkey64)
    return to_checksum_address(keccak(pubkey64)[12:])


def _check_pubkey(pubkey64: bytes) -> None:
    if len(pubkey64) != 64:
        raise InvalidArgument(f"public key must be 64 bytes, got {len(pubkey64)}")


def seal(recipient_pubkey64: bytes, plaintext: bytes) -> bytes:
    """Encrypts ``plaintext`` so only the key owner can open it."""
    _check_pubkey(recipient_pubkey64)
    try:
        return ecies.encrypt(b"\x04" + recipient_pubkey64, plaintext, config=_ECIES)
    except ValueError as exc:  # not a point on the curve
        raise InvalidArgument(f"invalid recipient public key: {exc}") from exc


def open_sealed(private_key: LocalAccount | bytes, blob: bytes) -> bytes:
    """Decrypts a :func:`seal` blob; PermissionDenied if not for this key."""
    secret = bytes(private_key.key) if isinstance(private_key, LocalAccount) else private_key
    try:
        return ecies.decrypt(secret, blob, config=_ECIES)
    except Exception as exc:  # eciespy raises ValueError / cryptography InvalidTag
        raise PermissionDenied(f"cannot open sealed payload: {type(exc).__name__}") from exc


def encode_endpoint(details: dict[str, Any]) -> bytes:
    """Compact, deterministic bytes for endpoint details (version + JSON)."""
    try:
        body = json.dumps(details, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"endpoint details are not JSON-serialisable: {exc}") from exc
    data = _ENDPOINT_V1 + body.encode("utf-8")
    if len(data) > MAX_ENDPOINT_BYTES:
        raise InvalidArgument(f"endpoint details too large ({len(data)} > {MAX_ENDPOINT_BYTES})")
    return data


def decode_endpoint(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_ENDPOINT_BYTES:
        raise InvalidArgument("endpoint details too large")
    if not data.startswith(_ENDPOINT_V1):
        raise InvalidArgument("unknown endpoint encoding version")
    try:
        details = json.loads(data[1:].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"malformed endpoint details: {exc}") from exc
    if not isinstance(details, dict):
        raise InvalidArgument("endpoint details must be an object")
    return details


def sign_message(account: LocalAccount, payload: bytes) -> bytes:
    """EIP-191 ``personal_sign`` signature (65 bytes r||s||v) over ``payload``."""
    return bytes(account.sign_message(encode_defunct(primitive=payload)).signature)


def recover_signer(payload: bytes, signature: bytes) -> str:
    """Checksum address that signed ``payload``; InvalidArgument if malformed."""
    if len(signature) != 65:
        raise InvalidArgument(f"signature must be 65 bytes, got {len(signature)}")
    try:
        return Account.recover_message(encode_defunct(primitive=payload), signature=signature)
    except Exception as exc:  # bad v / s values
        raise InvalidArgument(f"invalid signature: {exc}") from exc


def verify_signer(payload: bytes, signature: bytes, expected: str) -> None:
    """PermissionDenied unless ``payload`` was signed by ``expected``."""
    signer = recover_signer(payload, signature)
    if signer != to_checksum_address(expected):
        raise PermissionDenied(f"message signed by {signer}, expected {expected}")
