"""Per-component CPU and memory, sampled once a second while a run lasts.

CPU is in vCPUs (psutil's cpu_percent / 100) and memory is the resident set
(RSS, MB). App containers are measured through their processes on the host
(cheaper and finer than ``docker stats``); the Docker API is only asked
which containers exist and their init pid.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the sampler started
    component: str  # "chain", "mef", "meo" or "app"
    instance: str  # system id, "anvil" or the container name
    pid: int
    cpu_vcpu: float
    rss_mb: float


@dataclass(frozen=True)
class Target:
    component: str
    instance: str
    pid: int
    tree: bool = False  # include descendants (a container's processes)


def container_targets(testbed: str) -> list[Target]:
    """The testbed's running app containers (label ``mecfed.testbed``);
    a provider MEO's unclaimed warm-pool spares count as ``spare``."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
    except DockerException:
        return []
    try:
        out = []
        for c in client.containers.list(filters={"label": f"mecfed.testbed={testbed}"}):
            pid = int(c.attrs.get("State", {}).get("Pid") or 0)
            if pid:
                kind = "spare" if "-pool-" in c.name else "app"
                out.append(Target(kind, c.name, pid, tree=True))
        return out
    except DockerException:
        return []
    finally:
        client.close()


class ResourceSampler:
    """A daemon thread sampling ``fixed`` processes plus the testbed's
    containers every ``interval`` s until ``stop()`` or ``max_seconds``."""

    def __init__(
        self,
        fixed: list[Target],
        testbed: str,
        interval: float = 1.0,
        max_seconds: float = 900.0,
    ) -> None:
        self.fixed = fixed
        self.testbed = testbed
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        # psutil needs the same Process object across calls for cpu_percent.
        self._procs: dict[int, psutil.Process] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        return self.samples

    def _proc(self, pid: int) -> psutil.Process | None:
        p = self._procs.get(pid)
        if p is None:
            try:
                p = psutil.Process(pid)
                p.cpu_percent(None)  # prime: the first call always returns 0
            except psutil.Error:
                return None
            self._procs[pid] = p
        return p

    def _measure(self, target: Target) -> tuple[float, float] | None:
        root = self._proc(target.pid)
        if root is None:
            return None
        procs = [root]
        if target.tree:
            try:
                procs += [c for c in (self._proc(c.pid) for c in root.children(True)) if c]
            except psutil.Error:
                pass
        cpu = rss = 0.0
        for p in procs:
            try:
                cpu += p.cpu_percent(None) / 100.0
                rss += p.memory_info().rss / 2**20
            except psutil.Error:
                continue
        return cpu, rss

    def _loop(self) -> None:
        started = time.monotonic()
        # Prime every known process so the first real sample has a baseline.
        for t in self.fixed + container_targets(self.testbed):
            self._measure(t)
        last = 0.0
        while not self._stop.wait(self.interval):
            last = time.monotonic() - started
            if last > self.max_seconds:
                return  # bounded even if stop() is never called
            self._sample(last)
        # A run shorter than the interval (direct, small N) still gets one
        # sample, taken over its whole length.
        now = time.monotonic() - started
        if now - last > 0.25:
            self._sample(now)

    def _sample(self, now: float) -> None:
        # Containers come and go (providers deploy during the run).
        for t in self.fixed + container_targets(self.testbed):
            m = self._measure(t)
            if m is not None:
                self.samples.append(Sample(round(now, 3), t.component, t.instance, t.pid, *m))
