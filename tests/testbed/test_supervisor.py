"""Process supervision without namespaces (no root needed): tagging, finding
again, SIGTERM first and SIGKILL after the bound."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from mecfed.testbed.supervisor import Supervisor, is_alive, is_tagged

TESTBED = "mfapp-sv"

GRACEFUL = """
import signal, sys, time
def term(*_):
    print("terminating gracefully", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
time.sleep(60)
"""

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def _wait_ready(log: Path) -> None:
    deadline = time.monotonic() + 10
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.02)


async def test_sigterm_first(tmp_path: Path) -> None:
    sup = Supervisor(TESTBED, stop_timeout=5.0)
    proc = sup.start("graceful", [sys.executable, "-c", GRACEFUL], namespace=None, run_dir=tmp_path)
    _wait_ready(proc.log_path)
    assert is_tagged(proc.pid, TESTBED) and proc.pid in sup.tagged()
    assert (tmp_path / "graceful.pid").read_text().strip() == str(proc.pid)
    assert sup.running("graceful", proc.pid, proc.log_path) is proc
    await sup.stop_all([proc.pid])
    assert proc.popen is not None and proc.popen.returncode == 0
    assert "terminating gracefully" in proc.log_path.read_text()
    assert sup.running("graceful", proc.pid, proc.log_path) is None


async def test_sigkill_after_the_bound(tmp_path: Path) -> None:
    sup = Supervisor(TESTBED, stop_timeout=0.5)
    proc = sup.start("stubborn", [sys.executable, "-c", STUBBORN], namespace=None, run_dir=tmp_path)
    _wait_ready(proc.log_path)
    started = time.monotonic()
    await sup.stop_all([proc.pid])
    assert 0.5 <= time.monotonic() - started < 3
    assert proc.popen is not None and proc.popen.returncode == -signal.SIGKILL
    assert not is_alive(proc.pid)


async def test_foreign_pids_are_not_ours(tmp_path: Path) -> None:
    sup = Supervisor(TESTBED)
    other = Supervisor("mfapp-other")
    proc = other.start("x", [sys.executable, "-c", GRACEFUL], namespace=None, run_dir=tmp_path)
    try:
        _wait_ready(proc.log_path)
        assert sup.ours([proc.pid]) == set()
        assert sup.running("x", proc.pid, proc.log_path) is None
        assert proc.pid not in sup.tagged()
    finally:
        await other.stop_all([proc.pid])
