"""The MEO's persisted state: its installation id, its apps, its federations,
the overlay reservations it holds and its *intents*, in memory and in one
sqlite file in ``state_dir`` (:mod:`mecfed.storage`, component ``meo``).

Intents make every resource findable after a crash: before a container or a
federation's links are created, a row naming them is written (durable before
the create starts). A record that owns the resource settles the intent in the
same transaction that saves the record (:meth:`State.save`); a rollback that
removed the resource settles it too. An intent still pending at start-up is
something a crashed or cancelled call made, or was about to make, that nobody
owns: reconcile removes it.

The installation id is random, made once per state directory: every
container and link this MEO makes carries it, so that two MEOs with the same
system id on one host (two testbeds, say) never take each other's.

Federations are keyed by (consumer_id, federation_id): provider-side ones by
the consumer they serve (ids are chosen by consumers and public on the
chain), consumer-side ones by "" (this system).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mecfed.errors import MecfedError, NotFound
from mecfed.storage import Database
from meo.alloc import Reservation
from meo.records import AppRecord, FederationRecord, FedKey, key_text

log = logging.getLogger(__name__)
T = TypeVar("T")

COMPONENT = "meo"
MIGRATIONS = [
    """
    CREATE TABLE meo_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE meo_apps (name TEXT PRIMARY KEY, data TEXT NOT NULL);
    CREATE TABLE meo_federations (
        consumer_id TEXT NOT NULL, federation_id TEXT NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (consumer_id, federation_id));
    CREATE TABLE meo_reservations (key TEXT PRIMARY KEY, data TEXT NOT NULL);
    CREATE TABLE meo_pool_claims (instance_id TEXT PRIMARY KEY, labels TEXT NOT NULL);
    CREATE TABLE meo_intents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL, host TEXT NOT NULL, name TEXT NOT NULL,
        owner TEXT NOT NULL, at REAL NOT NULL);
    """,
]

INSTANCE = "instance"  # name = the instance's name, host = its VIM host
OVERLAY = "overlay"  # name = the federation's link tag


@dataclass(frozen=True)
class Intent:
    id: int
    kind: str
    host: str
    name: str
    owner: str  # key_text of the federation, or "app:<name>"


def open_database(path: str | Path) -> Database:
    db = Database(path)
    db.migrate(COMPONENT, MIGRATIONS)
    return db


def installation_id(db: Database) -> str:
    """This installation's id, made on first use and kept in ``db``."""
    db.execute(
        "INSERT OR IGNORE INTO meo_meta (key, value) VALUES ('installation', ?)",
        (secrets.token_hex(8),),
    )
    row = db.query_one("SELECT value FROM meo_meta WHERE key = 'installation'")
    assert row is not None
    return str(row["value"])


class DbClaims:
    """The warm pool's claims (meo.vim.pool.ClaimStore) in the MEO's
    database; the JSON file earlier versions kept is imported once."""

    def __init__(self, db: Database, legacy_file: Path | None = None) -> None:
        self.db = db
        if legacy_file is not None and legacy_file.exists():
            self.save({**json.loads(legacy_file.read_text()), **self.load()})
            legacy_file.rename(legacy_file.with_name(legacy_file.name + ".imported"))

    def load(self) -> dict[str, dict[str, str]]:
        rows = self.db.query("SELECT instance_id, labels FROM meo_pool_claims")
        return {r["instance_id"]: json.loads(r["labels"]) for r in rows}

    def save(self, claims: dict[str, dict[str, str]]) -> None:
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM meo_pool_claims")
            for cid, labels in claims.items():
                tx.execute(
                    "INSERT INTO meo_pool_claims (instance_id, labels) VALUES (?, ?)",
                    (cid, json.dumps(labels)),
                )


def _load_each(kind: str, rows: Iterable[Any], parse: Callable[[dict[str, Any]], T]) -> list[T]:
    out = []
    for row in rows:
        try:
            out.append(parse(row if isinstance(row, dict) else json.loads(row["data"])))
        except (MecfedError, KeyError, TypeError, ValueError) as exc:
            # Kept out of the state rather than refusing to start; what it
            # made is still found by its installation label by the sweep.
            log.error("state: skipping an unreadable %s record %r: %s", kind, row, exc)
    return out


class State:
    def __init__(self, db: Database, system_id: str, legacy_file: Path | None = None) -> None:
        self.db = db
        self.system_id = system_id
        self.installation = installation_id(db)
        self.legacy_file = legacy_file
        self.apps: dict[str, AppRecord] = {}
        self.federations: dict[FedKey, FederationRecord] = {}
        # Shared with the allocator, which decides over it under its own lock.
        self.reservations: dict[str, Reservation] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- locks -------------------------------------------------------------

    def app_lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(f"app:{name}", asyncio.Lock())

    def federation_lock(self, key: FedKey) -> asyncio.Lock:
        return self._locks.setdefault(f"fed:{key_text(key)}", asyncio.Lock())

    # --- queries -----------------------------------------------------------

    def app(self, name: str) -> AppRecord:
        app = self.apps.get(name)
        if app is None:
            raise NotFound(f"app {name} not found")
        return app

    def federation(self, key: FedKey) -> FederationRecord:
        fed = self.federations.get(key)
        if fed is None:
            consumer, fid = key
            whose = f" of consumer {consumer}" if consumer else ""
            raise NotFound(f"federation {fid}{whose} not found on this host")
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

    def tags_in_use(self) -> set[str]:
        """Link tags of recorded federations and of overlays being made."""
        tags = {f.tag for f in self.federations.values() if f.tag}
        return tags | {i.name for i in self.intents() if i.kind == OVERLAY}

    def summary(self) -> dict[str, list[str]]:
        return {
            "apps": sorted(self.apps),
            "federations": sorted(key_text(k) for k in self.federations),
            "reservations": sorted(self.reservations),
        }

    # --- intents -----------------------------------------------------------

    def intend(self, kind: str, name: str, owner: str, host: str = "") -> Intent:
        """Durable before it returns: the resource may be created now."""
        with self.db.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO meo_intents (kind, host, name, owner, at) VALUES (?, ?, ?, ?, ?)",
                (kind, host, name, owner, time.time()),
            )
            return Intent(int(cur.lastrowid or 0), kind, host, name, owner)

    def settle(self, intents: Iterable[Intent]) -> None:
        """The resources are gone (or owned by a saved record)."""
        with self.db.transaction() as tx:
            for intent in intents:
                tx.execute("DELETE FROM meo_intents WHERE id = ?", (intent.id,))

    def forget(self, kind: str, names: Iterable[str]) -> None:
        """Settles the intents of ``kind`` naming ``names`` (removed in a rollback)."""
        with self.db.transaction() as tx:
            for name in names:
                tx.execute("DELETE FROM meo_intents WHERE kind = ? AND name = ?", (kind, name))

    def intents(self, owner: str | None = None) -> list[Intent]:
        rows = self.db.query("SELECT id, kind, host, name, owner FROM meo_intents ORDER BY id")
        out = [Intent(r["id"], r["kind"], r["host"], r["name"], r["owner"]) for r in rows]
        return [i for i in out if owner is None or i.owner == owner]

    # --- persistence -------------------------------------------------------

    def save(self) -> None:
        """Writes every record in one transaction and settles the intents
        whose resources a record now owns."""
        names = {i.name for a in self.apps.values() for i in a.instances if i.name}
        tags = {f.tag for f in self.federations.values() if f.tag}
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM meo_apps")
            tx.execute("DELETE FROM meo_federations")
            tx.execute("DELETE FROM meo_reservations")
            for app in self.apps.values():
                tx.execute(
                    "INSERT INTO meo_apps (name, data) VALUES (?, ?)",
                    (app.name, json.dumps(app.to_dict())),
                )
            for (consumer, fid), fed in self.federations.items():
                tx.execute(
                    "INSERT INTO meo_federations (consumer_id, federation_id, data) "
                    "VALUES (?, ?, ?)",
                    (consumer, fid, json.dumps(fed.to_dict())),
                )
            for key, res in self.reservations.items():
                tx.execute(
                    "INSERT INTO meo_reservations (key, data) VALUES (?, ?)",
                    (key, json.dumps(res.to_dict())),
                )
            for row in tx.execute("SELECT id, kind, name FROM meo_intents").fetchall():
                owned = row["name"] in (names if row["kind"] == INSTANCE else tags)
                if owned:
                    tx.execute("DELETE FROM meo_intents WHERE id = ?", (row["id"],))

    def load(self) -> None:
        """Reads the state a previous run left (restart without cleanup)."""
        self._import_legacy()
        apps = _load_each("app", self.db.query("SELECT data FROM meo_apps"), AppRecord.from_dict)
        feds = _load_each(
            "federation",
            self.db.query("SELECT data FROM meo_federations"),
            FederationRecord.from_dict,
        )
        res = _load_each(
            "reservation", self.db.query("SELECT data FROM meo_reservations"), Reservation.from_dict
        )
        self.clear()
        self.apps.update((a.name, a) for a in apps)
        self.federations.update((f.key, f) for f in feds)
        self.reservations.update((r.federation_id, r) for r in res)

    def _import_legacy(self) -> None:
        """The JSON file earlier versions wrote: imported once, then renamed
        aside (its records carry no tags, so their links go by name)."""
        if self.legacy_file is None or not self.legacy_file.exists():
            return
        data = json.loads(self.legacy_file.read_text())
        self.clear()
        self.apps.update(
            (a.name, a) for a in _load_each("app", data.get("apps", []), AppRecord.from_dict)
        )
        for fed in _load_each(
            "federation", data.get("federations", []), FederationRecord.from_dict
        ):
            self.federations[fed.key] = fed
        # Earlier versions keyed everything by the federation id alone; a
        # provider's reservation and addresses move to its (consumer, id) key.
        rekey = {f.federation_id: key_text(k) for k, f in self.federations.items() if k[0]}
        for r in _load_each("reservation", data.get("reservations", []), Reservation.from_dict):
            r.federation_id = rekey.get(r.federation_id, r.federation_id)
            self.reservations[r.federation_id] = r
        for app in self.apps.values():
            for rec in app.instances:
                rec.overlay_ips = {rekey.get(k, k): ip for k, ip in rec.overlay_ips.items()}
        self.save()
        self.legacy_file.rename(self.legacy_file.with_name(self.legacy_file.name + ".imported"))
        log.info("imported the state file %s", self.legacy_file)

    def clear(self) -> None:
        """Forgets everything (in place: the allocator keeps its reference)."""
        self.apps.clear()
        self.federations.clear()
        self.reservations.clear()


__all__ = [
    "INSTANCE",
    "OVERLAY",
    "DbClaims",
    "Intent",
    "State",
    "installation_id",
    "open_database",
]
