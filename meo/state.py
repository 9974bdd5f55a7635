"""The MEO's persisted state: its apps, its federations and the overlay
reservations it holds, in memory and in one JSON file in ``state_dir``.

The file is rewritten after every change, atomically (write aside, rename),
so a crash never leaves half a file; a restart without cleanup reads it
back (:meth:`State.load`), and a cleanup after a crash knows what to remove.
Per-object locks serialise the operations on one app or one federation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mecfed.errors import MecfedError, NotFound
from meo.alloc import Reservation
from meo.records import AppRecord, FederationRecord

log = logging.getLogger(__name__)
T = TypeVar("T")


def _load_each(
    kind: str, rows: list[dict[str, Any]], parse: Callable[[dict[str, Any]], T]
) -> list[T]:
    out = []
    for row in rows:
        try:
            out.append(parse(row))
        except (MecfedError, KeyError, TypeError, ValueError) as exc:
            # Kept out of the state rather than refusing to start; what it
            # made is still found by label and link prefix by a cleanup.
            log.error("state file: skipping an unreadable %s record %r: %s", kind, row, exc)
    return out


class State:
    def __init__(self, path: str | Path, system_id: str) -> None:
        self.path = Path(path)
        self.system_id = system_id
        self.apps: dict[str, AppRecord] = {}
        self.federations: dict[str, FederationRecord] = {}
        # Shared with the allocator, which decides over it under its own lock.
        self.reservations: dict[str, Reservation] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- locks -------------------------------------------------------------

    def app_lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(f"app:{name}", asyncio.Lock())

    def federation_lock(self, federation_id: str) -> asyncio.Lock:
        return self._locks.setdefault(f"fed:{federation_id}", asyncio.Lock())

    # --- queries -----------------------------------------------------------

    def app(self, name: str) -> AppRecord:
        app = self.apps.get(name)
        if app is None:
            raise NotFound(f"app {name} not found")
        return app

    def federation(self, federation_id: str) -> FederationRecord:
        fed = self.federations.get(federation_id)
        if fed is None:
            raise NotFound(f"federation {federation_id} not found on this host")
        return fed

    def federations_using(self, app_name: str) -> list[str]:
        """Federations whose consumer end is connected to the local app ``app_name``."""
        return sorted(
            f.federation_id
            for f in self.federations.values()
            if f.is_connected_consumer and f.app_name == app_name
        )

    def host_load(self) -> dict[str, int]:
        """Instances per host."""
        load: dict[str, int] = {}
        for app in self.apps.values():
            for inst in app.instances:
                load[inst.host] = load.get(inst.host, 0) + 1
        return load

    def summary(self) -> dict[str, list[str]]:
        return {
            "apps": sorted(self.apps),
            "federations": sorted(self.federations),
            "reservations": sorted(self.reservations),
        }

    # --- persistence -------------------------------------------------------

    def save(self) -> None:
        data = {
            "system_id": self.system_id,
            "apps": [a.to_dict() for a in self.apps.values()],
            "federations": [f.to_dict() for f in self.federations.values()],
            "reservations": [r.to_dict() for r in self.reservations.values()],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a file

    def load(self) -> None:
        """Reads the state a previous run left (restart without cleanup);
        no file means nothing was left."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        apps = _load_each("app", data.get("apps", []), AppRecord.from_dict)
        feds = _load_each("federation", data.get("federations", []), FederationRecord.from_dict)
        res = _load_each("reservation", data.get("reservations", []), Reservation.from_dict)
        self.clear()
        self.apps.update((a.name, a) for a in apps)
        self.federations.update((f.federation_id, f) for f in feds)
        self.reservations.update((r.federation_id, r) for r in res)

    def clear(self) -> None:
        """Forgets everything (in place: the allocator keeps its reference)."""
        self.apps.clear()
        self.federations.clear()
        self.reservations.clear()


__all__ = ["State"]
