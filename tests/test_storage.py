"""mecfed.storage: per-component schema versions, transactions, restarts."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from mecfed.errors import FailedPrecondition
from mecfed.storage import MEMORY, Database

V1 = "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
V2 = "ALTER TABLE t ADD COLUMN note TEXT NOT NULL DEFAULT '';\nCREATE INDEX t_v ON t (v);"


def test_migrations_run_once_and_survive_reopen(tmp_path):
    path = tmp_path / "sub" / "mef.db"
    db = Database(path)
    db.migrate("a", [V1])
    db.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("x", 1))
    db.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    db = Database(path)
    db.migrate("a", [V1, V2])  # only V2 runs
    assert db.version("a") == 2
    row = db.query_one("SELECT k, v, note FROM t")
    assert (row["k"], row["v"], row["note"]) == ("x", 1, "")
    assert db.query_one("PRAGMA journal_mode")[0] == "wal"


def test_newer_file_is_refused(tmp_path):
    db = Database(tmp_path / "x.db")
    db.migrate("a", [V1, V2])
    with pytest.raises(FailedPrecondition, match="refusing to downgrade"):
        db.migrate("a", [V1])


def test_components_are_versioned_apart():
    db = Database(MEMORY)
    db.migrate("a", [V1])
    db.migrate("b", ["CREATE TABLE u (x INTEGER);"])
    assert (db.version("a"), db.version("b"), db.version("c")) == (1, 1, 0)


def test_failed_migration_leaves_nothing():
    db = Database(MEMORY)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        db.migrate("a", ["CREATE TABLE t (x INTEGER);\nCREATE TABLE t (y INTEGER);"])
    assert db.version("a") == 0
    assert db.query_one("SELECT name FROM sqlite_master WHERE name = 't'") is None


def test_transaction_is_all_or_nothing():
    db = Database(MEMORY)
    db.migrate("a", [V1])
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO t (k, v) VALUES ('a', 1)")
            raise RuntimeError("boom")
    assert db.query("SELECT * FROM t") == []
