"""Fixtures for the MEO tests.

Integration tests emulate two MEC systems as two network namespaces ("hosts")
joined by a veth underlay. Each host's MEO runs as a process inside its host
namespace (meo_host.py), with its gRPC server on a unix socket so the test
reaches it from the root namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import grpc
import pytest

from mecfed.config import SystemConfig, TlsPaths
from mecfed.v1 import orchestrator_pb2_grpc
from meo.nsutil import create_netns, run_in_netns

NETNS_DIR = "/var/run/netns"


def make_config(system_id: str, state_dir: Path, **overrides: Any) -> SystemConfig:
    raw: dict[str, Any] = dict(
        system_id=system_id,
        system_name=system_id,
        system_provider="test",
        underlay_ip="127.0.0.1",
        mef_listen="127.0.0.1:0",
        meo_listen="127.0.0.1:0",
        tls=TlsPaths(ca="", cert="", key=""),
        state_dir=str(state_dir),
    )
    raw.update(overrides)
    return SystemConfig(**raw)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@dataclass
class Host:
    """One emulated MEC system host: a netns with an underlay address."""

    netns: str
    underlay_ip: str

    @property
    def path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"


@pytest.fixture
def underlay() -> Iterator[tuple[Host, Host]]:
    """Two host namespaces joined by a veth pair (10.x.y.1 <-> 10.x.y.2)."""
    _need_root()
    from pyroute2 import IPRoute, netns

    tag = secrets.token_hex(3)
    a, b = f"mta{tag}", f"mtb{tag}"
    net = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}"
    hosts = (Host(a, f"{net}.1"), Host(b, f"{net}.2"))
    try:
        for h in hosts:
            create_netns(h.netns)

        def make_underlay() -> None:
            with IPRoute() as ipr:
                ipr.link("add", ifname=f"ua{tag}", kind="veth", peer=f"ub{tag}")
                for h, dev in zip(hosts, (f"ua{tag}", f"ub{tag}"), strict=True):
                    ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], net_ns_fd=h.netns)

        # pyroute2's sync API runs its own event loop: keep it off pytest's thread.
        run_in_netns("/proc/self/ns/net", make_underlay)
        for h, dev in zip(hosts, (f"ua{tag}", f"ub{tag}"), strict=True):

            def configure(h: Host = h, dev: str = dev) -> None:
                with IPRoute() as ipr:
                    idx = ipr.link_lookup(ifname=dev)[0]
                    ipr.addr("add", index=idx, address=h.underlay_ip, prefixlen=24)
                    ipr.link("set", index=idx, state="up")
                    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

            run_in_netns(h.path, configure)
        yield hosts
    finally:
        # Deleting a namespace deletes every link in it (bridges, VXLANs, veths).
        for h in hosts:
            with contextlib.suppress(Exception):
                netns.remove(h.netns)


@dataclass
class System:
    """A running MEO (a process in its host namespace) and a stub for it."""

    config: SystemConfig
    host: Host
    proc: subprocess.Popen[bytes]
    channel: grpc.aio.Channel
    stub: orchestrator_pb2_grpc.MecOrchestratorStub


@contextlib.asynccontextmanager
async def start_system(
    host: Host, vim: str, tmp: Path, system_id: str, *, fail_once: str = ""
) -> AsyncIterator[System]:
    """Runs ``tests/meo/meo_host.py`` in ``host``'s namespace. A separate
    process, not a thread: gRPC's internal threads would otherwise inherit
    the namespace of whichever thread started them and break later servers
    of the test session."""
    config = make_config(system_id, tmp / system_id, underlay_ip=host.underlay_ip, vim=vim)
    cfg_file = tmp / f"{system_id}.json"
    config.save(cfg_file)
    sock = tmp / f"{system_id}.sock"
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("meo_host.py")),
        "--netns",
        host.path,
        "--config",
        str(cfg_file),
        "--socket",
        str(sock),
    ]
    if fail_once:
        cmd += ["--fail-once", fail_once]
    proc, log = await asyncio.to_thread(_launch, cmd, tmp / f"{system_id}.log")
    channel = grpc.aio.insecure_channel(f"unix:{sock}")
    try:
        try:
            await asyncio.wait_for(channel.channel_ready(), 20)
        except TimeoutError:
            raise RuntimeError(
                f"MEO {system_id} did not start: {(tmp / f'{system_id}.log').read_text()}"
            ) from None
        yield System(
            config, host, proc, channel, orchestrator_pb2_grpc.MecOrchestratorStub(channel)
        )
    finally:
        await channel.close()
        proc.send_signal(signal.SIGTERM)  # the MEO runs cleanup_all on SIGTERM
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        await asyncio.to_thread(_remove_leftover_instances, system_id)


def _launch(cmd: list[str], log_path: Path) -> tuple[subprocess.Popen[bytes], BinaryIO]:
    log = open(log_path, "wb")  # the caller closes it
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log


def _remove_leftover_instances(system_id: str) -> None:
    """Belt and braces: no container or namespace of a test system survives."""
    with contextlib.suppress(Exception):
        import docker

        client = docker.from_env()
        for c in client.containers.list(all=True, filters={"label": f"mecfed.system={system_id}"}):
            c.remove(force=True)
    from pyroute2 import netns

    for name in netns.listnetns():
        if name.startswith(f"mecfed-{system_id}-"):
            with contextlib.suppress(Exception):
                for pid in netns.ns_pids().get(name, ()):
                    os.kill(pid, 9)
                netns.remove(name)


@pytest.fixture(scope="session")
def echo_image() -> str:
    from meo.image import build_image

    try:
        import docker

        docker.from_env().ping()
    except Exception:
        pytest.skip("no Docker engine")
    build_image("mecfed/echo:1")
    return "mecfed/echo:1"
