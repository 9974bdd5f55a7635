"""The compiled Federation contract, shipped as package data.

``contracts/build.js`` writes ``mecfed/chain/data/Federation.json`` with the
pinned compiler and CI checks that it matches a fresh build; it is read
through importlib.resources, so an installed wheel has it too.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from mecfed.errors import FailedPrecondition

ARTIFACT_NAME = "Federation.json"


@cache
def federation_artifact() -> dict[str, Any]:
    """``{abi, bytecode, deployedBytecode, compiler, settings, sourceSha256}``."""
    path = resources.files("mecfed.chain").joinpath("data", ARTIFACT_NAME)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FailedPrecondition(
            f"contract artifact {ARTIFACT_NAME} is missing from the mecfed.chain package data: "
            "run scripts/build_contract.sh"
        ) from None


def federation_abi() -> list[dict[str, Any]]:
    return federation_artifact()["abi"]
