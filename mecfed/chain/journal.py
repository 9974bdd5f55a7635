"""What a :class:`~mecfed.chain.client.ChainClient` must not forget across a
reconnect or a restart, in the process's :class:`~mecfed.storage.Database`
(component ``chain_journal``; in memory when the client is given none):

* every transaction it sent: nonce, hash, the signed bytes, the fees, what
  it was for (``purpose``), until when executing it is still wanted
  (``valid_until``, wall-clock seconds) and its state: ``pending`` (sent, or
  maybe sent: not known to be mined), ``mined``, ``replaced`` (its nonce
  went to another transaction, e.g. the no-op that cancelled it) or
  ``dropped`` (the node refused it: it never entered a pool);
* the chain's identity (chain id, genesis hash) and the code hash of each
  contract it was told to expect, as first seen;
* the cursor of each named log stream: the last event its consumer took.

A row is written before the step it records is acted on (a transaction is
journalled before it is sent), so after a crash the journal may name a
transaction the node never saw, never the other way round.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mecfed.storage import MEMORY, Database

COMPONENT = "chain_journal"

PENDING = "pending"
MINED = "mined"
REPLACED = "replaced"
DROPPED = "dropped"
STATES = (PENDING, MINED, REPLACED, DROPPED)

# Finished rows are kept this long (seconds) for post-mortems, then pruned.
KEEP_FINISHED_S = 7 * 24 * 3600.0

_MIGRATIONS = [
    """
    CREATE TABLE chain_identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        chain_id INTEGER NOT NULL,
        genesis TEXT NOT NULL,
        anchor TEXT
    );
    CREATE TABLE chain_code (
        address TEXT PRIMARY KEY,
        code_hash TEXT NOT NULL
    );
    CREATE TABLE chain_tx (
        tx_hash TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        nonce INTEGER NOT NULL,
        raw BLOB NOT NULL,
        fees TEXT NOT NULL,
        purpose TEXT NOT NULL,
        valid_until REAL,
        state TEXT NOT NULL,
        sent_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        block_number INTEGER,
        replaced_by TEXT,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX chain_tx_by_state ON chain_tx (account, state, nonce);
    CREATE TABLE chain_cursor (
        stream TEXT PRIMARY KEY,
        block_number INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        block_hash TEXT NOT NULL
    );
    """
]


@dataclass(frozen=True)
class Entry:
    """One journalled transaction."""

    tx_hash: str
    account: str
    nonce: int
    raw: bytes
    fees: Mapping[str, int]
    purpose: str
    valid_until: float | None
    state: str
    sent_at: float
    updated_at: float = 0.0
    block_number: int | None = None
    replaced_by: str | None = None
    note: str = ""

    def stale(self, now: float | None = None) -> bool:
        """Whether executing it now would be harmful (past ``valid_until``)."""
        return self.valid_until is not None and (now or time.time()) > self.valid_until


@dataclass(frozen=True)
class Cursor:
    """Where a named log stream resumes: after this event."""

    block_number: int
    log_index: int
    block_hash: str


class Journal:
    """The tables of :mod:`mecfed.chain.journal` in ``db`` (None: a private
    in-memory database, lost with the process)."""

    def __init__(self, db: Database | None = None) -> None:
        self.db = db if db is not None else Database(MEMORY)
        self.durable = self.db.path != MEMORY
        self.db.migrate(COMPONENT, _MIGRATIONS)

    # -- identity ---------------------------------------------------------------

    def identity(self) -> tuple[int, str] | None:
        row = self.db.query_one("SELECT chain_id, genesis FROM chain_identity WHERE id = 1")
        return (int(row["chain_id"]), str(row["genesis"])) if row else None

    def anchor(self) -> str | None:
        """The hash of block 1 as first seen (None: not yet recorded)."""
        row = self.db.query_one("SELECT anchor FROM chain_identity WHERE id = 1")
        return str(row["anchor"]) if row and row["anchor"] else None

    def record_anchor(self, block_hash: str) -> None:
        self.db.execute(
            "UPDATE chain_identity SET anchor = ? WHERE id = 1 AND anchor IS NULL", (block_hash,)
        )

    def record_identity(self, chain_id: int, genesis: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO chain_identity (id, chain_id, genesis) VALUES (1, ?, ?)",
            (chain_id, genesis),
        )

    def code_hash(self, address: str) -> str | None:
        row = self.db.query_one("SELECT code_hash FROM chain_code WHERE address = ?", (address,))
        return str(row["code_hash"]) if row else None

    def record_code(self, address: str, code_hash: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO chain_code (address, code_hash) VALUES (?, ?)",
            (address, code_hash),
        )

    # -- transactions -----------------------------------------------------------

    def record(self, entry: Entry) -> None:
        now = time.time()
        self.db.execute(
            "INSERT OR REPLACE INTO chain_tx (tx_hash, account, nonce, raw, fees, purpose,"
            " valid_until, state, sent_at, updated_at, block_number, replaced_by, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.tx_hash,
                entry.account,
                entry.nonce,
                entry.raw,
                json.dumps(dict(entry.fees)),
                entry.purpose,
                entry.valid_until,
                entry.state,
                entry.sent_at,
                now,
                entry.block_number,
                entry.replaced_by,
                entry.note,
            ),
        )

    def mark(
        self,
        tx_hash: str,
        state: str,
        *,
        block_number: int | None = None,
        replaced_by: str | None = None,
        note: str = "",
    ) -> None:
        assert state in STATES, state
        self.db.execute(
            "UPDATE chain_tx SET state = ?, updated_at = ?, block_number = ?,"
            " replaced_by = ?, note = ? WHERE tx_hash = ?",
            (state, time.time(), block_number, replaced_by, note, tx_hash),
        )

    def get(self, tx_hash: str) -> Entry | None:
        row = self.db.query_one("SELECT * FROM chain_tx WHERE tx_hash = ?", (tx_hash,))
        return _entry(row) if row else None

    def pending(self, account: str) -> list[Entry]:
        """``account``'s transactions not known to be mined, by nonce."""
        rows = self.db.query(
            "SELECT * FROM chain_tx WHERE account = ? AND state = ? ORDER BY nonce, sent_at",
            (account, PENDING),
        )
        return [_entry(r) for r in rows]

    def at_nonce(self, account: str, nonce: int) -> list[Entry]:
        rows = self.db.query(
            "SELECT * FROM chain_tx WHERE account = ? AND nonce = ? ORDER BY sent_at",
            (account, nonce),
        )
        return [_entry(r) for r in rows]

    def mined_from(self, account: str, nonce: int) -> list[Entry]:
        """``account``'s transactions journalled as mined at ``nonce`` or above."""
        rows = self.db.query(
            "SELECT * FROM chain_tx WHERE account = ? AND state = ? AND nonce >= ? ORDER BY nonce",
            (account, MINED, nonce),
        )
        return [_entry(r) for r in rows]

    def next_nonce(self, account: str) -> int | None:
        """One past the highest nonce of a pending transaction (None: none)."""
        row = self.db.query_one(
            "SELECT MAX(nonce) AS top FROM chain_tx WHERE account = ? AND state = ?",
            (account, PENDING),
        )
        return None if row is None or row["top"] is None else int(row["top"]) + 1

    def prune(self, older_than: float = KEEP_FINISHED_S) -> int:
        return self.db.execute(
            "DELETE FROM chain_tx WHERE state != ? AND updated_at < ?",
            (PENDING, time.time() - older_than),
        )

    # -- stream cursors ---------------------------------------------------------

    def cursor(self, stream: str) -> Cursor | None:
        row = self.db.query_one("SELECT * FROM chain_cursor WHERE stream = ?", (stream,))
        if row is None:
            return None
        return Cursor(int(row["block_number"]), int(row["log_index"]), str(row["block_hash"]))

    def save_cursor(self, stream: str, cursor: Cursor) -> None:
        self.db.execute(
            "INSERT INTO chain_cursor (stream, block_number, log_index, block_hash)"
            " VALUES (?, ?, ?, ?) ON CONFLICT(stream) DO UPDATE SET"
            " block_number = excluded.block_number, log_index = excluded.log_index,"
            " block_hash = excluded.block_hash",
            (stream, cursor.block_number, cursor.log_index, cursor.block_hash),
        )


def _entry(row: Any) -> Entry:
    return Entry(
        tx_hash=row["tx_hash"],
        account=row["account"],
        nonce=int(row["nonce"]),
        raw=bytes(row["raw"]),
        fees={k: int(v) for k, v in json.loads(row["fees"]).items()},
        purpose=row["purpose"],
        valid_until=row["valid_until"],
        state=row["state"],
        sent_at=float(row["sent_at"]),
        updated_at=float(row["updated_at"]),
        block_number=row["block_number"],
        replaced_by=row["replaced_by"],
        note=row["note"],
    )


__all__ = ["COMPONENT", "DROPPED", "MINED", "PENDING", "REPLACED", "Cursor", "Entry", "Journal"]
