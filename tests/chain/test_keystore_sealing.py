"""Key files, ECIES sealing, off-chain signatures, anvil launcher basics."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from mecfed.chain.anvil import Anvil, anvil_binary, dev_accounts
from mecfed.chain.keystore import create_keystore, load_key
from mecfed.chain.sealing import (
    address_of_pubkey,
    decode_endpoint,
    encode_endpoint,
    open_sealed,
    pubkey_of,
    recover_signer,
    seal,
    sign_message,
    verify_signer,
)
from mecfed.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

FAST_SCRYPT = 2**4  # tests only; production uses the default (2**18)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("correct horse\n")
    return path


def test_keystore_roundtrip_and_mode(tmp_path: Path, password_file: Path) -> None:
    path = tmp_path / "keys" / "mef-a.json"
    address = create_keystore(path, password_file, scrypt_n=FAST_SCRYPT)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path, password_file).address == address
    with pytest.raises(FailedPrecondition):
        create_keystore(path, password_file, scrypt_n=FAST_SCRYPT)  # no silent overwrite


def test_keystore_imports_given_key(tmp_path: Path, password_file: Path) -> None:
    account = Account.create()
    path = tmp_path / "k.json"
    assert create_keystore(path, password_file, private_key=account.key, scrypt_n=FAST_SCRYPT) == (
        account.address
    )
    assert load_key(path, password_file).key == account.key


def test_keystore_errors(tmp_path: Path, password_file: Path) -> None:
    path = tmp_path / "k.json"
    create_keystore(path, password_file, scrypt_n=FAST_SCRYPT)
    wrong = tmp_path / "wrong"
    wrong.write_text("battery staple")
    with pytest.raises(PermissionDenied, match="wrong password"):
        load_key(path, wrong)
    with pytest.raises(NotFound):
        load_key(tmp_path / "missing.json", password_file)
    with pytest.raises(NotFound):
        load_key(path, tmp_path / "no-password-file")
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(InvalidArgument):
        load_key(path, empty)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(InvalidArgument):
        load_key(garbage, password_file)


def test_pubkey_matches_address() -> None:
    account = Account.create()
    pub = pubkey_of(account)
    assert len(pub) == 64
    assert to_checksum_address(keccak(pub)[12:]) == account.address
    assert address_of_pubkey(pub) == account.address


def test_seal_open_roundtrip() -> None:
    alice, mallory = Account.create(), Account.create()
    details = {"ip": "10.0.3.7", "port": 8080, "proto": "tcp", "token": "é∂"}
    blob = seal(pubkey_of(alice), encode_endpoint(details))
    assert decode_endpoint(open_sealed(alice, blob)) == details
    assert decode_endpoint(open_sealed(bytes(alice.key), blob)) == details
    # compressed ephemeral key (33) + nonce (12) + tag (16) + body
    assert len(blob) == 33 + 12 + 16 + len(encode_endpoint(details))
    with pytest.raises(PermissionDenied):
        open_sealed(mallory, blob)
    with pytest.raises(PermissionDenied):
        open_sealed(alice, blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(InvalidArgument):
        seal(b"\x00" * 63, b"x")


def test_endpoint_encoding_is_compact_and_checked() -> None:
    data = encode_endpoint({"b": 1, "a": "x"})
    assert data == b'\x01{"a":"x","b":1}'
    with pytest.raises(InvalidArgument):
        decode_endpoint(b"\x02{}")
    with pytest.raises(InvalidArgument):
        decode_endpoint(b"\x01[1]")
    with pytest.raises(InvalidArgument):
        encode_endpoint({"x": object()})


def test_sign_and_recover() -> None:
    account = Account.create()
    payload = b"deployment notice: app=42 system=b"
    signature = sign_message(account, payload)
    assert len(signature) == 65
    assert recover_signer(payload, signature) == account.address
    verify_signer(payload, signature, account.address.lower())
    assert recover_signer(payload + b"!", signature) != account.address
    with pytest.raises(PermissionDenied):
        verify_signer(payload + b"!", signature, account.address)
    with pytest.raises(InvalidArgument):
        recover_signer(payload, signature[:64])


def test_dev_accounts_are_anvils() -> None:
    (first,) = dev_accounts(1)
    assert first.address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_missing_binary_message(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="make install"):
        anvil_binary(tmp_path)


@pytest.mark.asyncio
async def test_anvil_stop_leaves_no_process() -> None:
    node = Anvil(block_time=0.5, chain_id=4242)
    await node.start()
    pid = node.pid
    assert pid is not None and node.ws_url.startswith("ws://127.0.0.1:")
    await node.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    await node.stop()  # idempotent
