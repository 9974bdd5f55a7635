"""Optional dependencies of the application layer.

The terminal UI (``rich``) and the benchmark's plots (``matplotlib``,
``numpy``) are extras (``pip install 'mecfed[ui]'``, ``'mecfed[bench]'``):
the MEF and MEO daemons never need them. A subcommand that does checks
first, so a missing extra is one clear error instead of an ImportError
half-way through a run.
"""

from __future__ import annotations

import importlib.util

from mecfed.errors import FailedPrecondition

#: extra -> the top-level modules it provides.
EXTRAS: dict[str, tuple[str, ...]] = {
    "ui": ("rich",),
    "bench": ("rich", "matplotlib", "numpy"),
}


def missing(extra: str) -> list[str]:
    """Modules of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, command: str) -> None:
    """Raises FailedPrecondition naming the extra if any of its modules is missing."""
    absent = missing(extra)
    if absent:
        raise FailedPrecondition(
            f"`mecfed {command}` needs the optional dependencies {', '.join(absent)}: "
            f"pip install 'mecfed[{extra}]'"
        )


__all__ = ["EXTRAS", "missing", "require"]
