"""Running code inside another network namespace without shelling out.

``setns(CLONE_NEWNET)`` changes the namespace of the calling *thread* only,
so the work runs in a short-lived thread that enters the target namespace,
does its job and returns to the original one. Sockets keep the namespace they
were created in, which is how the probe gets a socket inside a container.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """Moves the calling thread into the network namespace behind ``fd``."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


def run_in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Runs ``fn`` in a fresh thread inside ``netns_path``; blocking.

    Call it through ``asyncio.to_thread`` from async code."""
    result: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
            try:
                target = os.open(netns_path, os.O_RDONLY)
                try:
                    setns(target)
                finally:
                    os.close(target)
                try:
                    result.append(fn())
                finally:
                    setns(own)  # never leave a pooled thread in a foreign netns
            finally:
                os.close(own)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=worker, name="netns-worker", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def create_netns(name: str) -> str:
    """Creates the named network namespace ``/var/run/netns/<name>``.

    pyroute2's ``netns.create`` forks a Python child to do this, which can
    crash in a process that runs gRPC threads; here a throwaway thread
    unshares its own network namespace and pyroute2 bind-mounts it."""
    from pyroute2 import netns

    def worker() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")
        netns.attach(name, threading.get_native_id())  # mount /proc/<tid>/ns/net

    error: list[BaseException] = []

    def run() -> None:
        try:
            worker()
        except BaseException as exc:
            error.append(exc)

    # The thread ends in the new namespace; it must never run anything else.
    thread = threading.Thread(target=run, name="netns-create", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return f"/var/run/netns/{name}"
