"""``python -m meo`` as the testbed runs it, inside a namespace of its own
(netns VIM, unix socket): SIGTERM stops it gracefully and keeps what it
made for the next start, unless ``--cleanup-on-exit``; ``--cleanup``
removes it all after the fact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from meo_helpers import (
    NETNS_DIR,
    PREFIX,
    _launch,
    _need_root,
    _remove_leftover_instances,
    make_config,
)
from pyroute2 import IPRoute, netns

from mecfed.storage import Database
from mecfed.v1 import common_pb2, orchestrator_pb2_grpc
from mecfed.v1 import orchestrator_pb2 as pb
from meo.nsutil import create_netns, run_in_netns

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def place(tmp_path) -> Iterator[tuple[str, Path, str]]:
    """(namespace, config file, system id) of one MEO."""
    _need_root()
    sid = f"{PREFIX}m{secrets.token_hex(3)}"
    create_netns(sid)

    def lo_up() -> None:
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    run_in_netns(f"{NETNS_DIR}/{sid}", lo_up)
    config = make_config(
        sid,
        tmp_path / "state",
        underlay_ip="10.217.251.1",
        vim="netns",
        meo_listen=f"unix:{tmp_path}/meo.sock",
    )
    cfg = tmp_path / "config.json"
    config.save(cfg)
    try:
        yield sid, cfg, config.meo_listen
    finally:
        _remove_leftover_instances(sid)
        with contextlib.suppress(Exception):
            netns.remove(sid)


def _spec(replicas: int = 1) -> common_pb2.AppSpec:
    return common_pb2.AppSpec(image="mecfed/echo:1", replicas=replicas)


def _app_namespaces(sid: str) -> list[str]:
    return sorted(n for n in netns.listnetns() if n.startswith(f"mecfed-{sid}-"))


def _meo(sid: str, cfg: Path, *flags: str) -> list[str]:
    return ["ip", "netns", "exec", sid, sys.executable, "-m", "meo", "--config", str(cfg), *flags]


@contextlib.asynccontextmanager
async def running(
    sid: str, cfg: Path, target: str, *flags: str
) -> AsyncIterator[orchestrator_pb2_grpc.MecOrchestratorStub]:
    proc, log = await asyncio.to_thread(
        _launch, _meo(sid, cfg, "--insecure", *flags), cfg.with_suffix(".log")
    )
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            try:
                await asyncio.wait_for(channel.channel_ready(), 30)
            except TimeoutError:
                raise RuntimeError(cfg.with_suffix(".log").read_text()) from None
            yield orchestrator_pb2_grpc.MecOrchestratorStub(channel)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _recorded_apps(cfg: Path, sid: str) -> list[str]:
    db = Database(cfg.parent / "state" / f"meo-{sid}.db")
    try:
        return [json.loads(r["data"])["name"] for r in db.query("SELECT data FROM meo_apps")]
    finally:
        db.close()


async def test_sigterm_keeps_state_and_cleanup_removes_it(place):
    sid, cfg, target = place
    async with running(sid, cfg, target) as stub:
        app = await stub.CreateApp(pb.CreateAppRequest(name="web", spec=_spec()))
    # Stopped by SIGTERM: the app outlives the process, recorded for the next start.
    assert len(_app_namespaces(sid)) == 1 and _recorded_apps(cfg, sid) == ["web"]
    async with running(sid, cfg, target) as stub:
        again = await stub.GetApp(pb.GetAppRequest(name="web"))
        assert [i.instance_id for i in again.instances] == [i.instance_id for i in app.instances]
    proc = await asyncio.create_subprocess_exec(*_meo(sid, cfg, "--cleanup"))
    assert await proc.wait() == 0
    assert _app_namespaces(sid) == [] and _recorded_apps(cfg, sid) == []


async def test_cleanup_on_exit_removes_everything_at_sigterm(place):
    sid, cfg, target = place
    async with running(sid, cfg, target, "--cleanup-on-exit") as stub:
        await stub.CreateApp(pb.CreateAppRequest(name="web", spec=_spec(replicas=2)))
        assert len(_app_namespaces(sid)) == 2
    assert _app_namespaces(sid) == [] and _recorded_apps(cfg, sid) == []


def test_the_flags_are_documented():
    out = subprocess.run(
        [sys.executable, "-m", "meo", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--config", "--insecure", "--cleanup", "--cleanup-on-exit"):
        assert flag in out
