"""Configuration of one MEC system's MEF and MEO processes.

The testbed writes one JSON file per system; ``mecfed mef serve --config F``
and ``mecfed meo serve --config F`` read it. Operators outside the testbed
write the same file by hand (see README, "Configuration reference").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TlsPaths:
    """PEM files of this system's identity and the CA it trusts."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class PeerConfig:
    """A pre-registered federation partner (direct backend)."""

    system_id: str
    endpoint: str  # host:port of the peer's Mff server


@dataclass(frozen=True)
class SystemConfig:
    system_id: str
    system_name: str
    system_provider: str
    underlay_ip: str
    # MEF: Mff (peers) and Mfm (own MEO) share one server on this address.
    mef_listen: str
    # MEO: listens where only the local MEF and the operator reach it.
    meo_listen: str
    tls: TlsPaths
    peers: tuple[PeerConfig, ...] = ()
    backend: str = "direct"
    # "docker" or "netns"; see meo.vim.
    vim: str = "docker"
    # Offer policy as the JSON form of mecfed.v1.OfferPolicy (protobuf JSON).
    offer_policy: dict[str, Any] = field(default_factory=dict)
    # Pools the MEO allocates from.
    vni_range: tuple[int, int] = (1000, 16_000_000)
    vxlan_port_range: tuple[int, int] = (4789, 4889)
    overlay_pool: str = "172.30.0.0/16"
    # Docker VIM only: started spare containers of ``warm_image`` the MEO
    # keeps for deployments (0 = start every container on demand).
    warm_pool: int = 0
    warm_image: str = ""
    # Where the MEO keeps its state (reservations), to clean up after a crash.
    state_dir: str = "/var/lib/mecfed"
    # The MEF's database file (federation records, provider releases owed,
    # and whatever else of the MEF must survive a restart); "" means
    # ``<state_dir>/mef-<system_id>.db`` (see :attr:`mef_db_path`).
    state_db: str = ""
    # Consumer: runtime liveness period after ESTABLISHED (0 = off).
    liveness_period_ms: int = 2000
    # Chain backend: {"ws_url", "contract", "keystore", "password_file"}.
    chain: dict[str, Any] = field(default_factory=dict)
    # OTLP gRPC collector for traces ("" = OTEL_EXPORTER_OTLP_ENDPOINT, or off).
    otlp_endpoint: str = ""
    # This system's role ("consumer", "provider"), recorded in trace resources.
    role: str = ""

    @property
    def mef_db_path(self) -> str:
        return self.state_db or str(Path(self.state_dir) / f"mef-{self.system_id}.db")

    @property
    def meo_target(self) -> str:
        """Address the MEF dials for its MEO."""
        return self.meo_listen

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SystemConfig:
        raw = dict(raw)
        raw["tls"] = TlsPaths(**raw["tls"])
        raw["peers"] = tuple(PeerConfig(**p) for p in raw.get("peers", ()))
        for key in ("vni_range", "vxlan_port_range"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    @classmethod
    def load(cls, path: str | Path) -> SystemConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")
