"""Starting, stopping and health-probing testbed processes in namespaces.

Processes enter their namespace through setns(2) in the forked child right
before exec (no ``ip netns exec``): the parent opens the namespace file, the
child only issues one syscall. Every process carries ``MECFED_TESTBED=<name>``
in its environment; that tag is how :func:`stop` makes sure a recorded pid
still is ours (pids get reused) and how :func:`find_tagged` finds processes
whose pid never made it into the state file because bring-up crashed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pyroute2 import netns

from mecfed.config import TlsPaths
from mecfed.rpc.security import secure_channel

TAG_ENV = "MECFED_TESTBED"
# A server that is not up yet puts the channel into reconnect backoff (1 s,
# growing to minutes by default); probing wants to notice it within ~0.1 s.
_PROBE_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 500),
)


@functools.cache
def _libc() -> ctypes.CDLL:
    # Loaded in the parent: finding libc may run ldconfig, which must not
    # happen in the forked child of a multi-threaded (gRPC) process.
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@dataclass
class Process:
    """A process the supervisor started (or found recorded)."""

    name: str
    pid: int
    log_path: Path
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        return is_alive(self.pid, self.popen)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(
    name: str,
    argv: Sequence[str],
    *,
    namespace: str | None,
    testbed: str,
    run_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Process:
    """Starts ``argv`` inside network namespace ``namespace`` (None: the
    caller's own, e.g. the chain node on the underlay gateway).

    Output goes to ``run_dir/<name>.log``, the pid to ``run_dir/<name>.pid``.
    The child gets its own session so that signals aimed at the caller (e.g.
    Ctrl-C of a bring-up) do not tear down a half-started testbed behind the
    state file's back; :func:`stop` ends it explicitly.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / f"{name}.log"
    child_env = {**os.environ, **(env or {}), TAG_ENV: testbed, "PYTHONUNBUFFERED": "1"}
    libc = _libc()
    ns_fd = (
        os.open(f"{netns.NETNS_RUN_DIR}/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
        if namespace
        else -1
    )
    try:
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                start_new_session=True,
                # Runs in the child between fork and exec; flags=0 so a
                # missing namespace fails instead of being created.
                preexec_fn=(lambda: netns.setns(ns_fd, flags=0, libc=libc)) if namespace else None,
            )
    finally:
        if namespace:
            os.close(ns_fd)
    (run_dir / f"{name}.pid").write_text(f"{popen.pid}\n")
    return Process(name=name, pid=popen.pid, log_path=log_path, popen=popen)


def is_alive(pid: int, popen: subprocess.Popen | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not; our own children get reaped)."""
    if popen is not None:
        return popen.poll() is None
    try:
        os.waitpid(pid, os.WNOHANG)  # reap if it is our (zombie) child
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 3 is the state; a zombie has finished running.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def is_tagged(pid: int, testbed: str) -> bool:
    """Whether ``pid`` is a process of testbed ``testbed``."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TAG_ENV}={testbed}".encode() in environ.split(b"\0")


def find_tagged(testbed: str) -> list[int]:
    """Every running process started by the testbed ``testbed``."""
    me = os.getpid()
    return [
        int(e)
        for e in os.listdir("/proc")
        if e.isdigit() and int(e) != me and is_tagged(int(e), testbed)
    ]


KILL_WAIT = 5.0  # seconds to wait for the kernel after SIGKILL


async def stop(pid: int, *, timeout: float = 5.0, popen: subprocess.Popen | None = None) -> None:
    """SIGTERM, then SIGKILL if ``pid`` is still running after ``timeout``.

    MEF and MEO servers take SIGTERM as the start of a graceful shutdown
    (health NOT_SERVING, calls in flight finish, spans are flushed);
    ``timeout`` bounds it."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_WAIT)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        delay = 0.01
        while is_alive(pid, popen) and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        if not is_alive(pid, popen):
            break
    if popen is not None:
        popen.poll()


async def probe(target: str, tls: TlsPaths, expected_peer_id: str, timeout: float = 1.0) -> bool:
    """One standard gRPC health check (service "") over mTLS."""
    async with secure_channel(target, tls, expected_peer_id, _PROBE_OPTIONS) as channel:
        try:
            resp = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


class NotHealthy(RuntimeError):
    pass


class Supervisor:
    """The processes of testbed ``testbed``: started tagged, found again by
    pid (only while still tagged and alive: pids get reused), stopped with
    SIGTERM and, after ``stop_timeout``, SIGKILL. Keeps the Popen handles of
    what it started, so its own children are reaped."""

    def __init__(self, testbed: str, *, stop_timeout: float = 5.0) -> None:
        self.testbed = testbed
        self.stop_timeout = stop_timeout
        self._procs: dict[int, Process] = {}

    def running(self, name: str, pid: int | None, log_path: Path) -> Process | None:
        """The recorded process ``pid`` if it still is one of ours."""
        if not pid or not is_tagged(pid, self.testbed) or not is_alive(pid):
            return None
        return self._procs.get(pid) or Process(name, pid, log_path)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        namespace: str | None,
        run_dir: Path,
        env: Mapping[str, str] | None = None,
    ) -> Process:
        proc = start(
            name, argv, namespace=namespace, testbed=self.testbed, run_dir=run_dir, env=env
        )
        self._procs[proc.pid] = proc
        return proc

    def ours(self, pids: Iterable[int]) -> set[int]:
        """Those of ``pids`` that still are processes of this testbed."""
        return {pid for pid in pids if is_tagged(pid, self.testbed)}

    def tagged(self) -> list[int]:
        return find_tagged(self.testbed)

    async def stop_all(self, pids: Iterable[int]) -> None:
        """Stops ``pids`` concurrently (never this process)."""
        me = os.getpid()
        await asyncio.gather(
            *(
                stop(
                    pid,
                    timeout=self.stop_timeout,
                    popen=p.popen if (p := self._procs.get(pid)) else None,
                )
                for pid in set(pids)
                if pid != me
            )
        )
        self._procs.clear()


async def wait_all_healthy(
    checks: Iterable[tuple[str, TlsPaths, str, Process]], *, deadline: float
) -> None:
    """Waits for every (target, tls, peer id, process) to be SERVING; one
    NotHealthy naming every failure as soon as one fails (the other waits
    are cancelled)."""
    try:
        async with asyncio.TaskGroup() as tg:
            for target, tls, peer, proc in checks:
                tg.create_task(wait_healthy(target, tls, peer, deadline=deadline, process=proc))
    except* NotHealthy as group:
        raise NotHealthy("\n".join(str(exc) for exc in group.exceptions)) from None


async def wait_healthy(
    target: str,
    tls: TlsPaths,
    expected_peer_id: str,
    *,
    deadline: float,
    process: Process | None = None,
) -> None:
    """Polls the health service of ``target`` with short backoff until it is
    SERVING; ``deadline`` is a ``time.monotonic()`` value. Gives up early if
    ``process`` exits."""
    delay = 0.05
    async with secure_channel(target, tls, expected_peer_id, _PROBE_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process is not None and not process.alive():
                raise NotHealthy(
                    f"{process.name} exited before becoming healthy; log tail:\n"
                    + process.log_tail()
                )
            left = deadline - time.monotonic()
            if left <= 0:
                tail = process.log_tail() if process else ""
                raise NotHealthy(f"{target} not healthy in time; log tail:\n{tail}")
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=min(1.0, left))
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 0.5)
