"""The consumer's federation records: durable, looked up, listed and watched.

Every version of a federation is written to the MEF's database
(:mod:`mecfed.storage`, component ``federations``) before watchers hear of
it, so what a client has seen survives a restart. The records are kept in
memory as well (reads and watches never touch the disk); the database is read
once, when the store opens.

Tables (component ``federations``):

- ``federations``: one row per federation, the newest version as
  ``mecfed.v1.Federation`` bytes, its state, and the trace it runs in.
  ``request_id`` is UNIQUE: two requests with one idempotency key can never
  make two rows, however they interleave.
- ``provider_releases``: provider-side leftovers still to be released
  (a rolled-back attempt whose provider could not be reached, a failed
  federation's provider), with their retry state. A row is written before
  the release is tried and deleted once the provider acknowledged it, so a
  restart retries whatever was not acknowledged.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from mecfed.errors import NotFound, ResourceExhausted
from mecfed.model import Federation, FederationState
from mecfed.storage import MEMORY, Database
from mecfed.v1 import federator_pb2
from mecfed.wire.federator import federation_from_proto, federation_to_proto

MAX_FEDERATIONS = 100_000
_WATCH_QUEUE = 64

COMPONENT = "federations"
MIGRATIONS = [
    """
    CREATE TABLE federations (
        federation_id TEXT PRIMARY KEY,
        request_id TEXT UNIQUE,
        state INTEGER NOT NULL,
        created_at REAL NOT NULL,
        trace TEXT NOT NULL DEFAULT '',
        record BLOB NOT NULL
    );
    CREATE TABLE provider_releases (
        federation_id TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        app_instance_id TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (federation_id, provider_id)
    );
    """,
]


@dataclass(frozen=True)
class PendingRelease:
    """A provider's side of a federation (or of one failed attempt) that has
    not been acknowledged as released yet."""

    federation_id: str
    provider_id: str
    app_instance_id: str = ""
    attempts: int = 0
    last_error: str = ""


class FederationStore:
    """Holds the newest version of every federation and tells watchers about
    each new version. A watcher that falls behind by more than its queue is
    given the newest version only (states are snapshots, so nothing is lost
    but intermediate versions; the final one is always delivered).

    ``db`` defaults to an in-memory database (tests that need no restart)."""

    def __init__(self, db: Database | None = None) -> None:
        self.db = db if db is not None else Database(MEMORY)
        self.db.migrate(COMPONENT, MIGRATIONS)
        self._items: dict[str, Federation] = {}
        self._by_request: dict[str, str] = {}
        self._traces: dict[str, str] = {}
        self._watchers: dict[str, set[asyncio.Queue[Federation]]] = {}
        for row in self.db.query("SELECT * FROM federations ORDER BY created_at"):
            fed = federation_from_proto(federator_pb2.Federation.FromString(row["record"]))
            self._items[fed.federation_id] = fed
            if row["request_id"]:
                self._by_request[row["request_id"]] = fed.federation_id
            if row["trace"]:
                self._traces[fed.federation_id] = row["trace"]

    def __len__(self) -> int:
        return len(self._items)

    def add(self, federation: Federation, request_id: str = "") -> Federation:
        """Records a new federation and returns it; if ``request_id`` is
        already taken, returns that request's federation instead (and records
        nothing)."""
        if request_id and (existing := self.by_request_id(request_id)):
            return existing
        if len(self._items) >= MAX_FEDERATIONS:
            self._prune()
        if len(self._items) >= MAX_FEDERATIONS:
            raise ResourceExhausted(f"too many federations (at most {MAX_FEDERATIONS})")
        try:
            self.db.execute(
                "INSERT INTO federations (federation_id, request_id, state, created_at, record) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    federation.federation_id,
                    request_id or None,
                    int(federation.state),
                    federation.created_at,
                    _encode(federation),
                ),
            )
        except sqlite3.IntegrityError:
            # Another writer of this file took the key first; theirs stands.
            row = self.db.query_one(
                "SELECT federation_id FROM federations WHERE request_id = ?", (request_id,)
            )
            if row is None:
                raise
            return self._load(row["federation_id"])
        self._items[federation.federation_id] = federation
        if request_id:
            self._by_request[request_id] = federation.federation_id
        return federation

    def _prune(self) -> None:
        """Forgets the oldest ended federations (FAILED, TERMINATED, with no
        release owed), a tenth of the limit at a time, so that a long-lived
        MEF keeps taking requests."""
        owed = {p.federation_id for p in self.pending_releases()}
        ended = [
            f
            for f in sorted(self._items.values(), key=lambda f: f.updated_at)
            if f.state in (FederationState.FAILED, FederationState.TERMINATED)
            and f.federation_id not in owed
        ][: max(1, MAX_FEDERATIONS // 10)]
        with self.db.transaction() as tx:
            for fed in ended:
                tx.execute("DELETE FROM federations WHERE federation_id = ?", (fed.federation_id,))
        gone = {f.federation_id for f in ended}
        for fid in gone:
            del self._items[fid]
            self._traces.pop(fid, None)
        self._by_request = {r: f for r, f in self._by_request.items() if f not in gone}

    def _load(self, federation_id: str) -> Federation:
        row = self.db.query_one(
            "SELECT * FROM federations WHERE federation_id = ?", (federation_id,)
        )
        if row is None:
            raise NotFound(f"federation {federation_id!r} not found")
        fed = federation_from_proto(federator_pb2.Federation.FromString(row["record"]))
        self._items[federation_id] = fed
        if row["request_id"]:
            self._by_request[row["request_id"]] = federation_id
        return fed

    def by_request_id(self, request_id: str) -> Federation | None:
        fid = self._by_request.get(request_id)
        return self._items.get(fid) if fid else None

    def get(self, federation_id: str) -> Federation:
        try:
            return self._items[federation_id]
        except KeyError:
            raise NotFound(f"federation {federation_id!r} not found") from None

    def list(self, states: Iterable[FederationState] = ()) -> list[Federation]:
        wanted = set(states)
        items = [f for f in self._items.values() if not wanted or f.state in wanted]
        return sorted(items, key=lambda f: f.created_at, reverse=True)

    def put(self, federation: Federation) -> Federation:
        """Writes the new version (durably), then tells the watchers."""
        self.db.execute(
            "UPDATE federations SET state = ?, record = ? WHERE federation_id = ?",
            (int(federation.state), _encode(federation), federation.federation_id),
        )
        self._items[federation.federation_id] = federation
        for queue in self._watchers.get(federation.federation_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(federation)
        return federation

    async def watch(
        self, federation_id: str, follow_after_terminal: bool = False
    ) -> AsyncIterator[Federation]:
        """The current version, then every new one. Ends after a terminal
        state (ESTABLISHED, DEGRADED, FAILED, TERMINATED) unless
        ``follow_after_terminal``, in which case it ends after TERMINATED."""
        current = self.get(federation_id)
        queue: asyncio.Queue[Federation] = asyncio.Queue(_WATCH_QUEUE)
        self._watchers.setdefault(federation_id, set()).add(queue)
        try:
            yield current
            last = current
            while not _ends(last, follow_after_terminal):
                last = await queue.get()
                yield last
        finally:
            watchers = self._watchers.get(federation_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[federation_id]

    # --- the trace each federation runs in -------------------------------------

    def set_trace(self, federation_id: str, trace: str) -> None:
        """Remembers the federation's span ("<trace id>:<span id>", hex) so
        later spans (liveness, termination) join its trace, also after a
        restart."""
        self.db.execute(
            "UPDATE federations SET trace = ? WHERE federation_id = ?", (trace, federation_id)
        )
        self._traces[federation_id] = trace

    def trace_of(self, federation_id: str) -> str:
        return self._traces.get(federation_id, "")

    # --- provider releases still owed -------------------------------------------

    def owe_release(self, federation_id: str, provider_id: str, app_instance_id: str = "") -> None:
        """Records (before it is tried) that ``provider_id``'s side of the
        federation must be released."""
        self.db.execute(
            "INSERT INTO provider_releases (federation_id, provider_id, app_instance_id) "
            "VALUES (?, ?, ?) ON CONFLICT (federation_id, provider_id) DO UPDATE SET "
            "app_instance_id = CASE WHEN excluded.app_instance_id != '' "
            "THEN excluded.app_instance_id ELSE app_instance_id END",
            (federation_id, provider_id, app_instance_id),
        )

    def release_failed(
        self, federation_id: str, provider_id: str, error: str, next_at: float
    ) -> None:
        self.db.execute(
            "UPDATE provider_releases SET attempts = attempts + 1, last_error = ?, next_at = ? "
            "WHERE federation_id = ? AND provider_id = ?",
            (error[:500], next_at, federation_id, provider_id),
        )

    def released(self, federation_id: str, provider_id: str) -> None:
        self.db.execute(
            "DELETE FROM provider_releases WHERE federation_id = ? AND provider_id = ?",
            (federation_id, provider_id),
        )

    def pending_releases(self, federation_id: str | None = None) -> builtins.list[PendingRelease]:
        sql = (
            "SELECT federation_id, provider_id, app_instance_id, attempts, last_error "
            "FROM provider_releases"
        )
        params: tuple[str, ...] = ()
        if federation_id is not None:
            sql += " WHERE federation_id = ?"
            params = (federation_id,)
        return [PendingRelease(*tuple(row)) for row in self.db.query(sql, params)]


def _ends(fed: Federation, follow_after_terminal: bool) -> bool:
    if follow_after_terminal:
        return fed.state == FederationState.TERMINATED
    return fed.state.terminal


def _encode(fed: Federation) -> bytes:
    return federation_to_proto(fed).SerializeToString()


__all__ = ["COMPONENT", "FederationStore", "PendingRelease"]
