"""One embedded database file per process (stdlib sqlite3, WAL), shared by
the components that must survive a restart.

Each component owns its tables and versions them on its own: it calls
:meth:`Database.migrate` with its name and an ordered list of migrations (SQL
scripts); the database records per component how many have run, so that a
newer release applies only the missing ones and an older release refuses a
file written by a newer one instead of misreading it.

Writes are small and synchronous (WAL with ``synchronous=NORMAL`` costs a
fraction of a millisecond on a local disk), so callers on an asyncio loop use
them directly: a row is durable before the step it records is acted on.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from mecfed.errors import FailedPrecondition

MEMORY = ":memory:"


class Database:
    """A sqlite3 connection with per-component schema versions.

    ``path`` is a file (created with its parent directory, mode 0600) or
    :data:`MEMORY` for tests that need no restart.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != MEMORY:
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(mode=0o600, exist_ok=True)
        # One connection, serialised by a lock: the asyncio loop and the odd
        # worker thread (e.g. the MEO's VIM calls) may both write.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    def migrate(self, component: str, migrations: Sequence[str]) -> None:
        """Brings ``component``'s tables to ``len(migrations)``; each
        migration runs once, in its own transaction."""
        with self._lock:
            row = self._conn.execute(
                "SELECT version FROM schema_version WHERE component = ?", (component,)
            ).fetchone()
            current = row["version"] if row else 0
            if current > len(migrations):
                raise FailedPrecondition(
                    f"{self.path}: {component} schema is version {current}, this release "
                    f"knows only up to {len(migrations)}; refusing to downgrade"
                )
            for version in range(current, len(migrations)):
                with self.transaction() as conn:
                    conn.executescript_in_tx(migrations[version])
                    conn.execute(
                        "INSERT INTO schema_version (component, version) VALUES (?, ?) "
                        "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                        (component, version + 1),
                    )

    def version(self, component: str) -> int:
        row = self.query_one("SELECT version FROM schema_version WHERE component = ?", (component,))
        return int(row["version"]) if row else 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """``with db.transaction() as tx: tx.execute(...)`` — all or nothing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """One statement in its own transaction; returns the rows changed."""
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _Tx:
    """The statements of one transaction (see :meth:`Database.transaction`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def executescript_in_tx(self, script: str) -> None:
        # sqlite3.executescript() commits first; split instead so that a
        # migration and its version bump are one transaction.
        for statement in _statements(script):
            self._conn.execute(statement)


def _statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:80]!r}")


__all__ = ["MEMORY", "Database"]
