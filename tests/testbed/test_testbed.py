"""Testbed bring-up/teardown with a stand-in server instead of MEF/MEO."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pyroute2 import netns as pyroute2_netns

from mecfed.config import SystemConfig
from mecfed.testbed import Testbed, TestbedState, split_roles, supervisor
from mecfed.testbed import netns as tbnetns
from mecfed.testbed.plan import Underlay
from tests.testbed.standin import GRACEFUL

NAME = "mfapp"  # prefix "mfapp-": distinct from a real "mecfed" testbed
PREFIX = f"{NAME}-"
SUBNET = "10.219.0.0/18"
BASE_PORT = 50061
STANDIN = Path(__file__).with_name("standin.py")

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


def standin_command(component: str, config_path: Path) -> list[str]:
    return [sys.executable, str(STANDIN), component, str(config_path)]


def make_testbed(state_dir: Path) -> Testbed:
    return Testbed(
        NAME,
        state_dir,
        subnet=SUBNET,
        base_port=BASE_PORT,
        command=standin_command,
        health_timeout=30,
    )


def _leftovers() -> tuple[list[str], list[str], list[int]]:
    return (
        tbnetns.testbed_namespaces(PREFIX),
        tbnetns.testbed_links(PREFIX),
        supervisor.find_tagged(NAME),
    )


async def leftovers() -> tuple[list[str], list[str], list[int]]:
    # pyroute2's synchronous IPRoute runs its own event loop: not in ours.
    return await asyncio.to_thread(_leftovers)


# -- no root needed -----------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "consumers", "providers"), [(1, 0, 1), (2, 1, 1), (10, 8, 2), (30, 24, 6)]
)
def test_role_split(n, consumers, providers):
    roles = split_roles(n)
    assert roles.count("consumer") == consumers
    assert roles.count("provider") == providers


def test_explicit_consumers():
    assert split_roles(3, consumers=3) == ["consumer"] * 3
    with pytest.raises(ValueError):
        split_roles(3, consumers=4)


def test_underlay_addressing():
    ul = Underlay("mecfed-", ipaddress.ip_network("10.213.0.0/16"))
    assert str(ul.gateway) == "10.213.0.1"
    assert str(ul.system_ip(1)) == "10.213.0.11"
    assert str(ul.system_ip(200)) == "10.213.0.210"
    assert max(len(ul.host_peer), len(ul.system_namespace(200))) <= 15
    small = Underlay("x-", ipaddress.ip_network("10.0.0.0/28"))
    with pytest.raises(ValueError):
        small.system_ip(10)
    with pytest.raises(ValueError):
        Underlay("much-too-long-", ipaddress.ip_network("10.0.0.0/16"))
    with pytest.raises(ValueError, match="IPv4"):
        Underlay.of("x-", "fd00::/64")


# -- root: namespaces and processes ---------------------------------------------


@pytest.fixture
async def testbed(tmp_path):
    tb = make_testbed(tmp_path / "tb")
    try:
        yield tb
    finally:
        await tb.down()
        await asyncio.to_thread(
            tbnetns.remove_all, PREFIX
        )  # belt and braces should down() be broken


def _connect_from(namespace: str, ip: str, port: int) -> None:
    # A socket created inside the namespace (pyroute2 forks, setns-es and
    # hands the fd back), so the connect runs from that system's stack.
    sock = pyroute2_netns.create_socket(namespace, flags=0)
    try:
        sock.settimeout(5)
        sock.connect((ip, port))
    finally:
        sock.close()


@root_only
@pytest.mark.integration
async def test_up_reachability_idempotency(testbed):
    state = await testbed.up(3)
    assert [s.system_id for s in state.systems] == ["mec-01", "mec-02", "mec-03"]
    assert [s.role for s in state.systems] == ["consumer", "consumer", "provider"]
    namespaces, links, pids = await leftovers()
    assert namespaces == [f"{PREFIX}s1", f"{PREFIX}s2", f"{PREFIX}s3", f"{PREFIX}ul"]
    assert links == [f"{PREFIX}h"]
    assert len(pids) == 6

    cfg = SystemConfig.load(state.systems[0].config_path)
    assert cfg.system_name == "MEC system 01" and cfg.system_provider == "operator-01"
    assert {p.system_id for p in cfg.peers} == {"mec-02", "mec-03"}
    assert cfg.underlay_ip == "10.219.0.11"

    # System to system over the underlay bridge, root ns to each system.
    s1, s2, s3 = state.systems
    _connect_from(s1.namespace, s2.underlay_ip, BASE_PORT)
    _connect_from(s3.namespace, s1.underlay_ip, BASE_PORT + 1)
    for s in state.systems:
        socket.create_connection((s.underlay_ip, BASE_PORT), timeout=5).close()
        # mTLS health check with the system's own identity.
        assert await supervisor.probe(s.meo_listen, s.tls, s.system_id)
        # The certificate pins the system: another id at that address fails.
        assert not await supervisor.probe(s.mef_listen, s.tls, "mec-99", timeout=2)

    saved = TestbedState.from_dict(json.loads(testbed.state_path.read_text()))
    assert saved.status == "up" and saved.systems == state.systems

    again = await testbed.up(3)  # idempotent: same processes kept
    assert [s.pids for s in again.systems] == [s.pids for s in state.systems]

    await testbed.down()
    assert await leftovers() == ([], [], [])
    # SIGTERM first: every server went through its graceful stop.
    for s in state.systems:
        for component in ("mef", "meo"):
            log = (Path(s.run_dir) / f"{component}.log").read_text()
            assert f"{component} {GRACEFUL}" in log, log
    await testbed.down()  # idempotent
    assert testbed.load_state().status == "down"


@root_only
@pytest.mark.integration
async def test_down_kills_a_server_that_ignores_sigterm(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_IGNORE_TERM", "1")
    tb = Testbed(
        NAME,
        tmp_path,
        subnet=SUBNET,
        base_port=BASE_PORT,
        command=standin_command,
        health_timeout=30,
        stop_timeout=1.0,
    )
    try:
        await tb.up(2)
        started = time.monotonic()
        await tb.down()
        # Bounded: 1 s of grace, then SIGKILL (all processes at once).
        assert time.monotonic() - started < 8
    finally:
        await tb.down()
    assert await leftovers() == ([], [], [])


@root_only
@pytest.mark.integration
def test_refuses_overlapping_subnet(tmp_path):
    # The host's loopback route (127.0.0.0/8) is in use.
    tb = Testbed(NAME, tmp_path, subnet="127.1.0.0/16", command=standin_command)
    with pytest.raises(RuntimeError, match="overlaps"):
        tbnetns.check_subnet_free(tb.underlay)


_BRINGUP = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {repo_root!r})
    from tests.testbed.test_testbed import make_testbed
    asyncio.run(make_testbed(Path({state_dir!r})).up(3))
    """
)


@root_only
@pytest.mark.integration
async def test_down_after_killed_bringup(testbed, tmp_path):
    script = _BRINGUP.format(
        repo_root=str(Path(__file__).parents[2]), state_dir=str(testbed.state_dir)
    )
    # The stand-ins wait before serving, so bring-up hangs in the health wait.
    env = {**os.environ, "STANDIN_DELAY": "60"}
    bringup = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while len(await asyncio.to_thread(supervisor.find_tagged, NAME)) < 6:
            assert bringup.returncode is None, "bring-up ended early"
            assert time.monotonic() < deadline, "bring-up did not start its processes"
            await asyncio.sleep(0.05)
    finally:
        os.killpg(bringup.pid, signal.SIGKILL)
        await bringup.wait()
    assert testbed.load_state().status == "starting"
    assert len((await leftovers())[0]) == 4

    await make_testbed(testbed.state_dir).down()  # a fresh instance, as after a crash
    assert await leftovers() == ([], [], [])


@root_only
@pytest.mark.integration
async def test_up_fails_fast_when_a_process_exits(tmp_path):
    def crashing(component: str, config_path: Path) -> list[str]:
        if component == "mef":
            return [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
        return standin_command(component, config_path)

    tb = Testbed(NAME, tmp_path, subnet=SUBNET, base_port=BASE_PORT, command=crashing)
    try:
        started = time.monotonic()
        with pytest.raises(supervisor.NotHealthy, match="boom"):
            await tb.up(2)
        assert time.monotonic() - started < 15
        assert tb.load_state().status == "starting"
    finally:
        await tb.down()
    assert await leftovers() == ([], [], [])


def _make_orphans() -> None:
    pyroute2_netns.create(f"{PREFIX}s7")
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=f"{PREFIX}x", kind="veth", peer=f"{PREFIX}y")


@root_only
@pytest.mark.integration
async def test_down_without_state_removes_prefixed_resources(tmp_path):
    await asyncio.to_thread(_make_orphans)
    assert (await leftovers())[:2] == ([f"{PREFIX}s7"], [f"{PREFIX}x", f"{PREFIX}y"])
    await make_testbed(tmp_path / "empty").down()
    assert await leftovers() == ([], [], [])
