"""What exists (or is about to) for one testbed, saved as JSON.

The state file is written *before* anything is created and after every
step, so a bring-up killed half-way leaves names that ``down()`` removes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mecfed.config import TlsPaths
from mecfed.testbed.plan import SystemPlan

STARTING, UP, DOWN = "starting", "up", "down"


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

    @classmethod
    def of(cls, system: SystemPlan, pids: dict[str, int] | None = None) -> SystemState:
        return cls(
            system_id=system.system_id,
            index=system.index,
            system_name=system.system_name,
            role=system.role,
            namespace=system.namespace,
            underlay_ip=system.underlay_ip,
            mef_listen=system.mef_listen,
            meo_listen=system.meo_listen,
            config_path=str(system.config_path),
            run_dir=str(system.run_dir),
            tls=system.tls,
            pids=dict(pids or {}),
        )


@dataclass
class TestbedState:
    """What exists (or is about to) for one testbed; saved as JSON."""

    __test__ = False  # not a pytest test class despite its name

    name: str
    prefix: str
    subnet: str
    gateway: str
    status: str  # STARTING, UP or DOWN
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

    def record(self, kind: str, name: str) -> bool:
        """Adds a namespace or root-namespace link about to be created;
        whether it was new."""
        names = self.namespaces if kind == "namespace" else self.links
        if name in names:
            return False
        names.append(name)
        return True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TestbedState:
        raw = dict(raw)
        raw["systems"] = [
            SystemState(**{**s, "tls": TlsPaths(**s["tls"])}) for s in raw.get("systems", [])
        ]
        return cls(**raw)


class StateFile:
    """``<state_dir>/testbed.json``, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> TestbedState | None:
        try:
            return TestbedState.from_dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, state: TestbedState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(state.to_json() + "\n")
        os.replace(tmp, self.path)


__all__ = ["DOWN", "STARTING", "UP", "StateFile", "SystemState", "TestbedState"]
