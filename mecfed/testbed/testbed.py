"""N MEC systems on one machine: PKI, namespaces, configs, MEF/MEO processes.

``Testbed.up(n)`` builds everything idempotently; ``Testbed.down()`` removes
everything, also after the bring-up was killed half-way. For that the state
file (``<state_dir>/testbed.json``) names each namespace and link *before* it
is created, and ``down()`` does not rely on it alone: it also removes every
namespace and root-ns link named with the testbed prefix, every process tagged
``MECFED_TESTBED=<name>`` or living in one of those namespaces, and every
Docker container and network labelled ``mecfed.testbed=<name>``.

Contract with the MEO: processes get ``MECFED_TESTBED=<name>`` (and
``MECFED_SYSTEM_ID``, ``MECFED_ROLE``) in their environment; the MEO should
label its containers (and Docker networks) ``mecfed.testbed=$MECFED_TESTBED``
next to ``mecfed.system`` so that ``down()`` finds them even if the MEO died.
A ``netns`` VIM should name its namespaces with the prefix ``<name>-``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mecfed import tracing
from mecfed.config import PeerConfig, SystemConfig, TlsPaths
from mecfed.model.pricing import seeded_policies
from mecfed.testbed import netns, supervisor
from mecfed.testbed.pki import Pki
from mecfed.wire.federator import policy_to_json

log = logging.getLogger(__name__)

COMPONENTS = ("meo", "mef")  # start order; both are started without waiting
CONSUMER_SHARE = 0.8  # consumer:provider split of the paper's evaluation
DEFAULT_STATE_ROOT = Path("/var/lib/mecfed/testbed")

# (component, config path) -> argv. Tests substitute a stand-in server.
ProcessCommand = Callable[[str, Path], Sequence[str]]


def default_command(component: str, config_path: Path) -> list[str]:
    return [sys.executable, "-m", component, "--config", str(config_path)]


def split_roles(n: int, consumers: int | None = None) -> list[str]:
    """Roles of systems 1..n: consumers first, then providers.

    By default 80:20 with at least one of each (N=2 -> 1/1, N=10 -> 8/2,
    N=30 -> 24/6); a single system is a provider.
    """
    if consumers is None:
        consumers = min(max(round(n * CONSUMER_SHARE), 1), n - 1) if n > 1 else 0
    if not 0 <= consumers <= n:
        raise ValueError(f"consumers must be within 0..{n}, got {consumers}")
    return ["consumer"] * consumers + ["provider"] * (n - consumers)


@dataclass
class SystemState:
    system_id: str
    index: int
    system_name: str
    role: str
    namespace: str
    underlay_ip: str
    mef_listen: str
    meo_listen: str
    config_path: str
    run_dir: str
    tls: TlsPaths
    pids: dict[str, int] = field(default_factory=dict)


@dataclass
class TestbedState:
    """What exists (or is about to) for one testbed; saved as JSON."""

    __test__ = False  # not a pytest test class despite its name

    name: str
    prefix: str
    subnet: str
    gateway: str
    status: str  # "starting", "up" or "down"
    params: dict[str, Any]
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    systems: list[SystemState] = field(default_factory=list)
    # Chain backend: {"ws_url", "contract", "pid"}.
    chain: dict[str, Any] = field(default_factory=dict)

    @property
    def consumers(self) -> list[SystemState]:
        return [s for s in self.systems if s.role == "consumer"]

    @property
    def providers(self) -> list[SystemState]:
        return [s for s in self.systems if s.role == "provider"]

    def system(self, system_id: str) -> SystemState:
        for s in self.systems:
            if s.system_id == system_id:
                return s
        raise KeyError(system_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TestbedState:
        raw = dict(raw)
        raw["systems"] = [
            SystemState(**{**s, "tls": TlsPaths(**s["tls"])}) for s in raw.get("systems", [])
        ]
        return cls(**raw)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Testbed:
    """A set of MEC systems in network namespaces on this machine."""

    __test__ = False

    def __init__(
        self,
        name: str = "mecfed",
        state_dir: Path | None = None,
        subnet: str = "10.213.0.0/16",
        base_port: int = 50051,
        *,
        command: ProcessCommand = default_command,
        health_timeout: float = 120.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if not name.replace("-", "").isalnum():
            raise ValueError(f"testbed name {name!r} must be alphanumeric (and '-')")
        self.name = name
        self.prefix = f"{name}-"
        # One directory per testbed name, so testbeds never share state.
        self.state_dir = Path(state_dir) if state_dir else DEFAULT_STATE_ROOT / name
        self.underlay = netns.Underlay(self.prefix, ipaddress.ip_network(subnet))
        self.base_port = base_port
        self.command = command
        self.health_timeout = health_timeout
        self.stop_timeout = stop_timeout
        self.pki = Pki(self.state_dir / "pki", ca_name=f"{name} testbed CA")
        self._procs: dict[int, supervisor.Process] = {}

    @property
    def state_path(self) -> Path:
        return self.state_dir / "testbed.json"

    def load_state(self) -> TestbedState | None:
        try:
            return TestbedState.from_dict(json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            return None

    def _save(self, state: TestbedState) -> None:
        _atomic_write(self.state_path, state.to_json() + "\n")

    # -- bring-up -----------------------------------------------------------

    async def up(
        self,
        n: int,
        *,
        backend: str = "direct",
        vim: str = "docker",
        consumers: int | None = None,
        image: str = "mecfed/echo:1",
        offer_policies: Mapping[str, dict[str, Any]] | None = None,
        seed: int = 0,
        block_time: float | None = 1.0,
        otlp_endpoint: str | None = None,
        warm_pool: int | None = None,
    ) -> TestbedState:
        """Brings up ``n`` MEC systems and waits until every MEF and MEO
        answers the gRPC health check.

        ``offer_policies`` maps a system id or a role ("provider",
        "consumer") to the protobuf-JSON OfferPolicy of those systems; a
        system id wins over its role. Without one, consumers make no offers
        and providers get tariff policies dealt from ``seed``. ``warm_pool``
        is the number of started spare app containers each provider's MEO
        keeps (Docker VIM; default: twice a provider's fair share of the
        consumers). Calling ``up`` again with the same
        arguments keeps what runs; with different ones it rebuilds.
        """
        if not 1 <= n <= min(self.underlay.max_systems, 999):
            raise ValueError(f"n must be within 1..{self.underlay.max_systems}")
        roles = split_roles(n, consumers)
        params = {
            "n": n,
            "backend": backend,
            "vim": vim,
            "roles": roles,
            "image": image,
            "offer_policies": dict(offer_policies or {}),
            "seed": seed,
            "block_time": block_time if backend == "chain" else None,
            "otlp_endpoint": tracing.resolve_endpoint(otlp_endpoint) or "",
            "warm_pool": default_warm_pool(roles) if warm_pool is None else warm_pool,
            "base_port": self.base_port,
        }
        # Reuse only a complete testbed with the same parameters; anything
        # else (a crashed bring-up, a lost state file) is cleared first, so no
        # unrecorded process of an earlier attempt can hold a port.
        state = self.load_state()
        if (
            state is None
            or state.status != "up"
            or state.params != params
            or state.subnet != str(self.underlay.subnet)
        ):
            await self.down()
            state = TestbedState(
                name=self.name,
                prefix=self.prefix,
                subnet=str(self.underlay.subnet),
                gateway=str(self.underlay.gateway),
                status="starting",
                params=params,
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._save(state)

        await asyncio.to_thread(netns.check_subnet_free, self.underlay)
        state.systems = await asyncio.to_thread(self._plan_systems, roles, state)
        self._save(state)
        await asyncio.to_thread(self._build_network, state)
        if params["backend"] == "chain":
            await self._ensure_chain(state, params)
            self._save(state)
        for system in state.systems:
            self._config(system, state, params).save(system.config_path)

        deadline = time.monotonic() + self.health_timeout
        started = [
            (s, c, self._ensure_process(state, s, c)) for s in state.systems for c in COMPONENTS
        ]
        self._save(state)
        try:
            # A TaskGroup cancels the remaining waits once one fails.
            async with asyncio.TaskGroup() as tg:
                for system, component, proc in started:
                    target = system.mef_listen if component == "mef" else system.meo_listen
                    tg.create_task(
                        supervisor.wait_healthy(
                            target, system.tls, system.system_id, deadline=deadline, process=proc
                        )
                    )
        except* supervisor.NotHealthy as group:
            # The state stays "starting"; down() clears the partial testbed.
            raise supervisor.NotHealthy("\n".join(str(exc) for exc in group.exceptions)) from None
        state.status = "up"
        self._save(state)
        log.info("testbed %s up: %d systems", self.name, n)
        return state

    def _plan_systems(self, roles: list[str], state: TestbedState) -> list[SystemState]:
        """Issues certificates and fixes names, addresses and paths."""
        old = {s.system_id: s for s in state.systems}
        systems = []
        for i, role in enumerate(roles, start=1):
            sid = f"mec-{i:02d}"
            ip = str(self.underlay.system_ip(i))
            sys_dir = self.state_dir / "systems" / sid
            sys_dir.mkdir(parents=True, exist_ok=True)
            systems.append(
                SystemState(
                    system_id=sid,
                    index=i,
                    system_name=f"MEC system {i:02d}",
                    role=role,
                    namespace=self.underlay.system_namespace(i),
                    underlay_ip=ip,
                    mef_listen=f"{ip}:{self.base_port}",
                    # On the underlay, not loopback: the operator's CLI in the
                    # root namespace must reach it; mTLS restricts callers.
                    meo_listen=f"{ip}:{self.base_port + 1}",
                    config_path=str(sys_dir / "config.json"),
                    run_dir=str(sys_dir),
                    tls=self.pki.issue(sid, [ip]),
                    pids=old[sid].pids if sid in old else {},
                )
            )
        return systems

    def _build_network(self, state: TestbedState) -> None:
        ul = self.underlay
        # Record first, create second: a crash in between leaves a name that
        # down() removes even though it may not exist.
        for name in (ul.namespace,):
            if name not in state.namespaces:
                state.namespaces.append(name)
        if ul.host_link not in state.links:
            state.links.append(ul.host_link)
        self._save(state)
        netns.ensure_underlay(ul)
        for system in state.systems:
            if system.namespace not in state.namespaces:
                state.namespaces.append(system.namespace)
                self._save(state)
            netns.ensure_system(ul, system.index)

    def _config(
        self, system: SystemState, state: TestbedState, params: dict[str, Any]
    ) -> SystemConfig:
        peers: tuple[PeerConfig, ...] = ()
        if params["backend"] == "direct":
            peers = tuple(
                PeerConfig(system_id=o.system_id, endpoint=o.mef_listen)
                for o in state.systems
                if o.system_id != system.system_id
            )
        policies = params["offer_policies"]
        policy = policies.get(system.system_id, policies.get(system.role))
        if policy is None:
            policy = default_policy(system, state, params.get("seed", 0))
        return SystemConfig(
            system_id=system.system_id,
            system_name=system.system_name,
            system_provider=f"operator-{system.index:02d}",
            underlay_ip=system.underlay_ip,
            mef_listen=system.mef_listen,
            meo_listen=system.meo_listen,
            tls=system.tls,
            peers=peers,
            backend=params["backend"],
            vim=params["vim"],
            offer_policy=dict(policy),
            state_dir=str(Path(system.run_dir) / "meo"),
            warm_pool=params.get("warm_pool", 0)
            if system.role == "provider" and params["vim"] == "docker"
            else 0,
            warm_image=params["image"],
            chain=self._chain_config(system, state),
            # A collector on the host's loopback is reached through the
            # underlay gateway from inside the system's namespace.
            otlp_endpoint=tracing.rewrite_loopback(
                params.get("otlp_endpoint", ""), str(self.underlay.gateway)
            )
            if params.get("otlp_endpoint")
            else "",
            role=system.role,
        )

    # -- chain backend -------------------------------------------------------

    def _chain_config(self, system: SystemState, state: TestbedState) -> dict[str, Any]:
        if not state.chain:
            return {}
        keys = Path(system.run_dir) / "chain"
        return {
            "ws_url": state.chain["ws_url"],
            "contract": state.chain["contract"],
            "keystore": str(keys / "key.json"),
            "password_file": str(keys / "password"),
            "block_period": state.params.get("block_time"),
        }

    async def _ensure_chain(self, state: TestbedState, params: dict[str, Any]) -> None:
        """The local chain: anvil on the underlay gateway (every system
        reaches it, as it would reach its own Besu node), the Federation
        contract with every system's address on its allowlist, one encrypted
        keystore per system and funds for gas and escrow."""
        from mecfed.chain import federation as fedc
        from mecfed.chain.anvil import Anvil
        from mecfed.chain.keystore import create_keystore

        pid = state.chain.get("pid")
        if pid and supervisor.is_tagged(pid, self.name) and supervisor._alive(pid):
            return
        anvil = Anvil(
            host=str(self.underlay.gateway),
            port=self.base_port - 1,
            block_time=params["block_time"],
        )
        chain_dir = self.state_dir / "chain"
        proc = supervisor.start(
            "anvil", anvil._command(), namespace=None, testbed=self.name, run_dir=chain_dir
        )
        self._procs[proc.pid] = proc
        state.chain = {"ws_url": anvil.ws_url, "pid": proc.pid}
        self._save(state)
        addresses = []
        for system in state.systems:
            keys = Path(system.run_dir) / "chain"
            keys.mkdir(parents=True, exist_ok=True)
            password = keys / "password"
            password.write_text(secrets.token_urlsafe(24))
            password.chmod(0o600)
            # Lighter scrypt than the production default: N systems unlock
            # their keys at once on a 2-core machine.
            addresses.append(
                await asyncio.to_thread(
                    create_keystore, keys / "key.json", password, scrypt_n=2**14, overwrite=True
                )
            )
        admin = anvil.dev_accounts[0]
        client = await _connect_when_ready(anvil.ws_url, admin, proc)
        try:
            state.chain["contract"] = await fedc.deploy(client, fedc.ALLOWLIST, addresses)
            receipts = [client.transfer(a, 100 * 10**18) for a in addresses]
            await asyncio.gather(*receipts)
        finally:
            await client.close()

    def _ensure_process(
        self, state: TestbedState, system: SystemState, component: str
    ) -> supervisor.Process:
        run_dir = Path(system.run_dir)
        pid = system.pids.get(component)
        if pid and supervisor.is_tagged(pid, self.name) and supervisor._alive(pid):
            known = self._procs.get(pid)
            return known or supervisor.Process(component, pid, run_dir / f"{component}.log")
        proc = supervisor.start(
            component,
            self.command(component, Path(system.config_path)),
            namespace=system.namespace,
            testbed=self.name,
            run_dir=run_dir,
            env={
                "MECFED_SYSTEM_ID": system.system_id,
                "MECFED_ROLE": system.role,
                "MECFED_IMAGE": state.params["image"],
            },
        )
        self._procs[proc.pid] = proc
        system.pids[component] = proc.pid
        return proc

    # -- teardown -----------------------------------------------------------

    async def down(self) -> None:
        """Removes processes, containers, namespaces and links; idempotent and
        independent of how complete the state file is."""
        state = self.load_state()
        pids: set[int] = set()
        if state is not None:
            pids |= {
                pid
                for s in state.systems
                for pid in s.pids.values()
                if supervisor.is_tagged(pid, self.name)
            }
        pids |= set(await asyncio.to_thread(supervisor.find_tagged, self.name))
        in_ns = await asyncio.to_thread(netns.namespace_pids, self.prefix)
        pids |= {pid for ns_pids in in_ns.values() for pid in ns_pids}
        pids.discard(os.getpid())
        await asyncio.gather(
            *(
                supervisor.stop(
                    pid,
                    timeout=self.stop_timeout,
                    popen=p.popen if (p := self._procs.get(pid)) else None,
                )
                for pid in pids
            )
        )
        self._procs.clear()
        await asyncio.to_thread(remove_containers, self.name)
        if state is not None:
            for s in state.systems:
                meta = Path(s.run_dir) / "meo" / "netns-vim"
                await asyncio.to_thread(netns.remove_vim_namespaces, meta)
        await asyncio.to_thread(netns.remove_all, self.prefix)
        if state is not None:
            state.status = "down"
            state.namespaces, state.links = [], []
            for s in state.systems:
                s.pids = {}
                # The MEO's records describe containers and links that are
                # gone now; a later bring-up must start from a clean slate.
                shutil.rmtree(Path(s.run_dir) / "meo", ignore_errors=True)
            self._save(state)
        log.info("testbed %s down", self.name)


async def _connect_when_ready(ws_url: str, account: Any, proc: supervisor.Process) -> Any:
    from mecfed.chain.client import ChainClient
    from mecfed.errors import Unavailable

    deadline = time.monotonic() + 30
    delay = 0.05
    while True:
        try:
            return await ChainClient.connect(ws_url, account, connect_attempts=1)
        except (Unavailable, OSError) as exc:
            if not proc.alive():
                raise supervisor.NotHealthy(f"anvil exited: {proc.log_tail()}") from exc
            if time.monotonic() > deadline:
                raise supervisor.NotHealthy(f"anvil not answering at {ws_url}: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


def default_warm_pool(roles: list[str]) -> int:
    """Twice a provider's fair share of the consumers: wins are uneven, and
    a claim beyond the pool still works, it just starts a container cold."""
    providers = max(1, roles.count("provider"))
    return 2 * -(-roles.count("consumer") // providers)


def default_policy(system: SystemState, state: TestbedState, seed: int) -> dict[str, Any]:
    """As in the paper, consumers only consume; providers price with the
    electricity-tariff model, regions dealt deterministically from ``seed``."""
    if system.role != "provider":
        return {"fixed": {"price": "1"}, "capacityReplicas": 0}
    providers = [s.system_id for s in state.systems if s.role == "provider"]
    consumers = len(state.systems) - len(providers)
    # Room for every consumer: on the chain a bid is binding and holds its
    # capacity until the auction ends, so a provider that could not serve
    # all consumers would stay out of some auctions (and leave them without
    # bids when everybody asks at once). The convex load factor still
    # spreads the wins.
    capacity = max(4, consumers)
    policies = seeded_policies(len(providers), seed, capacity_replicas=capacity)
    return policy_to_json(policies[providers.index(system.system_id)])


def remove_containers(testbed: str) -> None:
    """Removes Docker containers and networks labelled ``mecfed.testbed``."""
    try:
        import docker
        from docker.errors import DockerException, NotFound
    except ImportError:
        return
    try:
        client = docker.from_env()
    except DockerException as exc:
        log.warning("docker not reachable, skipping container cleanup: %s", exc)
        return
    label = {"label": f"mecfed.testbed={testbed}"}
    try:
        for container in client.containers.list(all=True, filters=label):
            try:
                container.remove(force=True)
            except NotFound:
                pass
        for network in client.networks.list(filters=label):
            try:
                network.remove()
            except NotFound:
                pass
    finally:
        client.close()
