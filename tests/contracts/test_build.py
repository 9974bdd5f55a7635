"""The committed artifact is exactly what the pinned compiler produces from the source."""

from __future__ import annotations

import hashlib
import json
import subprocess

from .conftest import ARTIFACT, BUILD, ROOT


def test_artifact_is_reproducible() -> None:
    res = subprocess.run([str(BUILD), "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout


def test_artifact_metadata() -> None:
    art = json.loads(ARTIFACT.read_text())
    assert set(art) == {
        "contractName",
        "abi",
        "bytecode",
        "deployedBytecode",
        "compiler",
        "settings",
        "sourceSha256",
    }
    src = (ROOT / "contracts/Federation.sol").read_bytes()
    assert art["sourceSha256"] == hashlib.sha256(src).hexdigest()
    assert art["compiler"]["name"] == "solc-js"
    assert art["compiler"]["version"].startswith("0.8.30+commit.")
    s = art["settings"]
    assert s["evmVersion"] == "cancun" and s["metadata"] == {"bytecodeHash": "none"}
    assert s["optimizer"]["enabled"] is True
    inp = json.loads((ROOT / "contracts/build-input.json").read_text())
    assert inp["settings"] == s and inp["sources"]["Federation.sol"]["content"] == src.decode()
    assert len(art["deployedBytecode"]) // 2 - 1 <= 24576  # EIP-170
