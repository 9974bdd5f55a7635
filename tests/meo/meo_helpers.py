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
# Every namespace, link and system of these tests starts with this prefix;
# underlays are inside UNDERLAY_NET.
PREFIX = "mfmeo"
UNDERLAY_NET = "10.217"


def make_config(system_id: str, state_dir: Path, **overrides: Any) -> SystemConfig:
    raw: dict[str, Any] = dict(
        system_id=system_id,
        system_name=system_id,
        system_provider="test",
        underlay_ip="192.0.2.1",
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
    """Two host namespaces joined by a veth pair (10.217.y.1 <-> 10.217.y.2)."""
    _need_root()
    from pyroute2 import IPRoute, netns

    tag = secrets.token_hex(3)
    a, b = f"{PREFIX}a{tag}", f"{PREFIX}b{tag}"
    net = f"{UNDERLAY_NET}.{secrets.randbelow(256)}"
    hosts = (Host(a, f"{net}.1"), Host(b, f"{net}.2"))
    try:
        for h in hosts:
            create_netns(h.netns)

        def make_underlay() -> None:
            with IPRoute() as ipr:
                ipr.link("add", ifname=f"{PREFIX}u{tag}", kind="veth", peer=f"{PREFIX}v{tag}")
                for h, dev in zip(hosts, (f"{PREFIX}u{tag}", f"{PREFIX}v{tag}"), strict=True):
                    ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], net_ns_fd=h.netns)

        # pyroute2's sync API runs its own event loop: keep it off pytest's thread.
        run_in_netns("/proc/self/ns/net", make_underlay)
        for h, dev in zip(hosts, (f"{PREFIX}u{tag}", f"{PREFIX}v{tag}"), strict=True):

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

        def drop_stray_veth() -> None:  # made, but not yet moved, when set-up failed
            with IPRoute() as ipr:
                for idx in ipr.link_lookup(ifname=f"{PREFIX}u{tag}"):
                    ipr.link("del", index=idx)

        with contextlib.suppress(Exception):
            run_in_netns("/proc/self/ns/net", drop_stray_veth)


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
    host: Host,
    vim: str,
    tmp: Path,
    system_id: str,
    *,
    fail_once: str = "",
    crash_at: str = "",
    sweep: bool = True,
    **config: Any,
) -> AsyncIterator[System]:
    """Runs ``tests/meo/meo_host.py`` in ``host``'s namespace. A separate
    process, not a thread: gRPC's internal threads would otherwise inherit
    the namespace of whichever thread started them and break later servers
    of the test session."""
    config = make_config(
        system_id, tmp / system_id, underlay_ip=host.underlay_ip, vim=vim, **config
    )
    cfg_file = tmp / f"{system_id}.json"
    config.save(cfg_file)
    sock = tmp / f"{system_id}.sock"
    sock.unlink(missing_ok=True)  # left by a process that was killed
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
    if crash_at:
        cmd += ["--crash-at", crash_at]
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
        if sweep:
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


def issue_identities(directory: Path, *system_ids: str) -> dict[str, TlsPaths]:
    """A throwaway CA and one certificate per system (CN and DNS SAN = the
    system id, IP SAN 127.0.0.1), as the testbed's PKI issues them."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mfmeo test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out = {}
    for sid in system_ids:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sid)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(sid), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        (directory / f"{sid}.key").write_bytes(pem_key(key))
        (directory / f"{sid}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[sid] = TlsPaths(
            ca=str(directory / "ca.pem"),
            cert=str(directory / f"{sid}.pem"),
            key=str(directory / f"{sid}.key"),
        )
    return out
