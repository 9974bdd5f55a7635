"""A built wheel carries what an installed mecfed needs: the compiled
contract (package data, read through importlib.resources) and the echo app's
source; imported from the unpacked wheel alone, the chain backend finds its ABI."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_contract_artifact_and_loads_it(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mecfed-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "mecfed/chain/data/Federation.json" in names
        assert "meo/app/echo.c" in names
        assert not any(n.startswith("tests/") for n in names)
        zf.extractall(tmp_path / "site")
    site = tmp_path / "site"
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import mecfed.chain.artifact as a, mecfed;"
        "assert mecfed.__file__.startswith(sys.argv[1]), mecfed.__file__;"
        "assert any(e.get('name') == 'decline' for e in a.federation_abi());"
        "print(len(a.federation_artifact()['bytecode']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(site)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert int(out.stdout) > 1000
