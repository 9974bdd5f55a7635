"""The testbed's plan: everything about N MEC systems that follows from the
parameters alone -- roles (80:20), names, namespaces, addresses, ports,
paths and each system's configuration (peers, offer policy, warm pool,
chain and tracing settings).

Pure: no root, no files, no processes. The provisioners make it real
(:mod:`~mecfed.testbed.pki`, :mod:`~mecfed.testbed.netns`,
:mod:`~mecfed.testbed.chain`, :mod:`~mecfed.testbed.supervisor`) and
:mod:`~mecfed.testbed.testbed` orders them.

Layout for testbed ``name`` on subnet ``S`` (prefix ``P = name + "-"``):
namespace ``P ul`` holds the underlay bridge, the root namespace one veth
end ``P h`` with the gateway ``S + 1``; system ``i`` (``mec-0i``) lives in
namespace ``P s<i>`` at ``S + 10 + i``, its MEF on ``base_port``, its MEO on
``base_port + 1``; the chain node (chain backend) listens on the gateway at
``base_port - 1``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mecfed import tracing
from mecfed.config import PeerConfig, SystemConfig, TlsPaths
from mecfed.model.pricing import seeded_policies
from mecfed.testbed.pki import identity_paths
from mecfed.wire.federator import policy_to_json

COMPONENTS = ("meo", "mef")  # start order; both are started without waiting
CONSUMER_SHARE = 0.8  # consumer:provider split of the paper's evaluation
BACKENDS = ("direct", "chain")
VIMS = ("docker", "netns")
MAX_SYSTEMS = 999  # system ids have two digits, more would still sort oddly

IFNAMSIZ = 15  # Linux interface names have at most 15 characters.
FIRST_HOST = 10  # system i gets network address + FIRST_HOST + i

# Consumers only consume (as in the paper).
CONSUMER_POLICY: dict[str, Any] = {"fixed": {"price": "1"}, "capacityReplicas": 0}


def check_name(name: str) -> None:
    if not name.replace("-", "").isalnum():
        raise ValueError(f"testbed name {name!r} must be alphanumeric (and '-')")


@dataclass(frozen=True)
class Underlay:
    """Names and addresses of the shared underlay of the testbed ``prefix``."""

    prefix: str
    subnet: ipaddress.IPv4Network

    def __post_init__(self) -> None:
        # The longest name we create in the root namespace is "<prefix>hb".
        if len(self.prefix) + 2 > IFNAMSIZ:
            raise ValueError(f"testbed prefix {self.prefix!r} too long for interface names")
        if self.subnet.num_addresses < 4:
            raise ValueError(f"subnet {self.subnet} too small")

    @classmethod
    def of(cls, prefix: str, subnet: str) -> Underlay:
        net = ipaddress.ip_network(subnet)
        if not isinstance(net, ipaddress.IPv4Network):
            raise ValueError(f"testbed subnet {subnet} must be IPv4")
        return cls(prefix, net)

    @property
    def namespace(self) -> str:
        return f"{self.prefix}ul"

    @property
    def host_link(self) -> str:
        return f"{self.prefix}h"

    @property
    def host_peer(self) -> str:
        return f"{self.prefix}hb"

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def max_systems(self) -> int:
        return self.subnet.num_addresses - FIRST_HOST - 2  # minus broadcast

    def system_namespace(self, index: int) -> str:
        return f"{self.prefix}s{index}"

    def system_port(self, index: int) -> str:
        """The bridge port of system ``index`` (inside the underlay ns)."""
        return f"p{index}"

    def system_ip(self, index: int) -> ipaddress.IPv4Address:
        if not 1 <= index <= self.max_systems:
            raise ValueError(f"system index {index} does not fit into {self.subnet}")
        return self.subnet.network_address + FIRST_HOST + index


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


def default_warm_pool(roles: Sequence[str]) -> int:
    """Twice a provider's fair share of the consumers: wins are uneven, and
    a claim beyond the pool still works, it just starts a container cold."""
    providers = max(1, roles.count("provider"))
    return 2 * -(-roles.count("consumer") // providers)


def default_policies(roles: Sequence[str], seed: int) -> list[dict[str, Any]]:
    """Offer policies (protobuf JSON) of systems 1..n: consumers make no
    offers; providers price with the electricity-tariff model, regions dealt
    deterministically from ``seed`` (:func:`mecfed.model.pricing.seeded_policies`).

    Each provider has room for every consumer: on the chain a bid is binding
    and holds its capacity until the auction ends, so a provider that could
    not serve all consumers would stay out of some auctions (and leave them
    without bids when everybody asks at once). The convex load factor still
    spreads the wins.
    """
    providers = roles.count("provider")
    capacity = max(4, len(roles) - providers)
    dealt = iter(seeded_policies(providers, seed, capacity_replicas=capacity))
    return [
        policy_to_json(next(dealt)) if role == "provider" else dict(CONSUMER_POLICY)
        for role in roles
    ]


@dataclass(frozen=True)
class Params:
    """What a bring-up was asked for. Saved with the state: ``up`` with the
    same parameters keeps a running testbed, other ones rebuild it."""

    n: int
    roles: tuple[str, ...]
    backend: str = "direct"
    vim: str = "docker"
    image: str = "mecfed/echo:1"
    # System id or role -> protobuf-JSON OfferPolicy; a system id wins.
    offer_policies: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    block_time: float | None = None  # chain backend only
    otlp_endpoint: str = ""  # as seen from the host ("" = tracing off)
    warm_pool: int = 0
    base_port: int = 50051

    @classmethod
    def build(
        cls,
        n: int,
        *,
        backend: str = "direct",
        vim: str = "docker",
        consumers: int | None = None,
        image: str = "mecfed/echo:1",
        offer_policies: Mapping[str, dict[str, Any]] | None = None,
        seed: int = 0,
        block_time: float | None = 1.0,
        otlp_endpoint: str = "",
        warm_pool: int | None = None,
        base_port: int = 50051,
    ) -> Params:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if vim not in VIMS:
            raise ValueError(f"vim must be one of {', '.join(VIMS)}, got {vim!r}")
        roles = tuple(split_roles(n, consumers))
        return cls(
            n=n,
            roles=roles,
            backend=backend,
            vim=vim,
            image=image,
            offer_policies=dict(offer_policies or {}),
            seed=seed,
            block_time=block_time if backend == "chain" else None,
            otlp_endpoint=otlp_endpoint,
            warm_pool=default_warm_pool(roles) if warm_pool is None else warm_pool,
            base_port=base_port,
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form kept in the state file (``TestbedState.params``)."""
        return {
            "n": self.n,
            "backend": self.backend,
            "vim": self.vim,
            "roles": list(self.roles),
            "image": self.image,
            "offer_policies": dict(self.offer_policies),
            "seed": self.seed,
            "block_time": self.block_time,
            "otlp_endpoint": self.otlp_endpoint,
            "warm_pool": self.warm_pool,
            "base_port": self.base_port,
        }


@dataclass(frozen=True)
class SystemPlan:
    """One MEC system: its MEF and MEO share the identity and the namespace."""

    system_id: str
    index: int
    role: str
    namespace: str
    underlay_ip: str
    mef_listen: str
    meo_listen: str
    run_dir: Path
    tls: TlsPaths

    @property
    def system_name(self) -> str:
        return f"MEC system {self.index:02d}"

    @property
    def system_provider(self) -> str:
        return f"operator-{self.index:02d}"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "config.json"

    @property
    def meo_state_dir(self) -> Path:
        """The MEO's records; a fresh bring-up starts without them."""
        return self.run_dir / "meo"

    @property
    def netns_vim_dir(self) -> Path:
        """Where a netns VIM records the namespaces of its app processes."""
        return self.meo_state_dir / "netns-vim"

    @property
    def keystore(self) -> Path:
        return self.run_dir / "chain" / "key.json"

    @property
    def password_file(self) -> Path:
        return self.run_dir / "chain" / "password"


@dataclass(frozen=True)
class Plan:
    name: str
    state_dir: Path
    underlay: Underlay
    params: Params
    systems: tuple[SystemPlan, ...]

    @property
    def prefix(self) -> str:
        return self.underlay.prefix

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def chain_dir(self) -> Path:
        return self.state_dir / "chain"

    @property
    def chain_host(self) -> str:
        """The chain node listens on the underlay gateway: every system
        reaches it there, as it would reach its own Besu node."""
        return str(self.underlay.gateway)

    @property
    def chain_port(self) -> int:
        return self.params.base_port - 1

    @property
    def chain_ws_url(self) -> str:
        return f"ws://{self.chain_host}:{self.chain_port}"

    def system(self, system_id: str) -> SystemPlan:
        for s in self.systems:
            if s.system_id == system_id:
                return s
        raise KeyError(system_id)

    def offer_policy(self, system: SystemPlan) -> dict[str, Any]:
        given = self.params.offer_policies
        policy = given.get(system.system_id, given.get(system.role))
        if policy is None:
            policy = default_policies(self.params.roles, self.params.seed)[system.index - 1]
        return dict(policy)

    def chain_config(self, system: SystemPlan, contract: str | None) -> dict[str, Any]:
        if self.params.backend != "chain" or not contract:
            return {}
        return {
            "ws_url": self.chain_ws_url,
            "contract": contract,
            "keystore": str(system.keystore),
            "password_file": str(system.password_file),
            "block_period": self.params.block_time,
        }

    def system_config(self, system: SystemPlan, *, contract: str | None = None) -> SystemConfig:
        """The configuration file of ``system`` (``contract``: the deployed
        Federation contract, chain backend)."""
        p = self.params
        peers: tuple[PeerConfig, ...] = ()
        if p.backend == "direct":
            peers = tuple(
                PeerConfig(system_id=o.system_id, endpoint=o.mef_listen)
                for o in self.systems
                if o.system_id != system.system_id
            )
        return SystemConfig(
            system_id=system.system_id,
            system_name=system.system_name,
            system_provider=system.system_provider,
            underlay_ip=system.underlay_ip,
            mef_listen=system.mef_listen,
            meo_listen=system.meo_listen,
            tls=system.tls,
            peers=peers,
            backend=p.backend,
            vim=p.vim,
            offer_policy=self.offer_policy(system),
            state_dir=str(system.meo_state_dir),
            warm_pool=p.warm_pool if system.role == "provider" and p.vim == "docker" else 0,
            warm_image=p.image,
            chain=self.chain_config(system, contract),
            # A collector on the host's loopback is reached through the
            # underlay gateway from inside the system's namespace.
            otlp_endpoint=tracing.rewrite_loopback(p.otlp_endpoint, str(self.underlay.gateway))
            if p.otlp_endpoint
            else "",
            role=system.role,
        )


def make_plan(name: str, state_dir: Path, underlay: Underlay, params: Params) -> Plan:
    """The plan of testbed ``name`` for ``params``; ValueError if it does not fit."""
    check_name(name)
    if not 1 <= params.n <= min(underlay.max_systems, MAX_SYSTEMS):
        raise ValueError(f"n must be within 1..{min(underlay.max_systems, MAX_SYSTEMS)}")
    if len(params.roles) != params.n:
        raise ValueError(f"{len(params.roles)} roles for {params.n} systems")
    pki_dir = state_dir / "pki"
    systems = []
    for i, role in enumerate(params.roles, start=1):
        sid = f"mec-{i:02d}"
        ip = str(underlay.system_ip(i))
        systems.append(
            SystemPlan(
                system_id=sid,
                index=i,
                role=role,
                namespace=underlay.system_namespace(i),
                underlay_ip=ip,
                mef_listen=f"{ip}:{params.base_port}",
                # On the underlay, not loopback: the operator's CLI in the
                # root namespace must reach it; mTLS restricts callers.
                meo_listen=f"{ip}:{params.base_port + 1}",
                run_dir=state_dir / "systems" / sid,
                tls=identity_paths(pki_dir, sid),
            )
        )
    return Plan(name, state_dir, underlay, params, tuple(systems))


__all__ = [
    "COMPONENTS",
    "CONSUMER_SHARE",
    "Params",
    "Plan",
    "SystemPlan",
    "Underlay",
    "check_name",
    "default_policies",
    "default_warm_pool",
    "make_plan",
    "split_roles",
]
