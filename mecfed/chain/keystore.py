"""Encrypted key files (Web3 Secret Storage v3, scrypt) for MEF accounts.

The password always comes from a file (mounted secret), never from an
environment variable, so it doesn't leak through ``/proc/<pid>/environ`` or
child processes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from mecfed.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

# Geth's "standard" scrypt cost; tests pass a small power of two instead.
DEFAULT_SCRYPT_N = 2**18


def read_password(password_file: str | os.PathLike[str]) -> str:
    path = Path(password_file)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFound(f"password file {path} does not exist") from exc
    except PermissionError as exc:
        raise PermissionDenied(f"password file {path} is not readable") from exc
    # One trailing newline is an artefact of `echo pw > file`, not password.
    password = raw[:-1] if raw.endswith("\n") else raw
    if not password:
        raise InvalidArgument(f"password file {path} is empty")
    return password


def _write_private(path: Path, data: str) -> None:
    """Writes ``data`` to ``path`` readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # O_EXCL + 0600 at creation: the key is never briefly world-readable.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def create_keystore(
    path: str | os.PathLike[str],
    password_file: str | os.PathLike[str],
    *,
    private_key: bytes | str | None = None,
    scrypt_n: int = DEFAULT_SCRYPT_N,
    overwrite: bool = False,
) -> str:
    """Creates a key file (new random key unless ``private_key``); returns the
    checksum address."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FailedPrecondition(f"keystore {target} already exists")
    password = read_password(password_file)
    account = Account.from_key(private_key) if private_key is not None else Account.create()
    keyfile = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    _write_private(target, json.dumps(keyfile))
    return account.address


def load_key(path: str | os.PathLike[str], password_file: str | os.PathLike[str]) -> LocalAccount:
    """Decrypts a key file with the password in ``password_file``."""
    source = Path(path)
    try:
        keyfile = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotFound(f"keystore {source} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"keystore {source} is not valid JSON: {exc}") from exc
    password = read_password(password_file)
    try:
        key = Account.decrypt(keyfile, password)
    except ValueError as exc:
        # eth_keyfile raises ValueError("MAC mismatch") for a wrong password.
        if "mac mismatch" in str(exc).lower():
            raise PermissionDenied(f"wrong password for keystore {source}") from exc
        raise InvalidArgument(f"keystore {source} is malformed: {exc}") from exc
    except (KeyError, TypeError) as exc:
        raise InvalidArgument(f"keystore {source} is malformed: {exc!r}") from exc
    account: LocalAccount = Account.from_key(key)
    expected = keyfile.get("address")
    if expected and account.address.lower().removeprefix("0x") != expected.lower().removeprefix(
        "0x"
    ):
        raise InvalidArgument(f"keystore {source}: key does not match its address field")
    return account
