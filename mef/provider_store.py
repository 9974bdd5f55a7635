"""The provider's durable state (mecfed.storage component "provider"): the
offer policy set by SetOfferPolicy, the binding quotes (bids) that hold
capacity, the commitments that make up the capacity ledger, and every
deployment record.

Rows are written before the step they record is acted on, so that after a
restart the provider knows what it promised and what it may have started;
:meth:`mef.workflow.provider.ProviderWorkflow.reconcile` then makes the
local MEO agree. Non-binding quotes (direct RequestOffer) are not stored:
they hold nothing and expire within seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from mecfed.model import AppSpec, InstanceState, OfferPolicy, OverlayEndpoint, Problem
from mecfed.storage import MEMORY, Database
from mecfed.v1 import common_pb2
from mecfed.wire.common import app_from_proto, app_to_proto, endpoint_from_proto, endpoint_to_proto
from mecfed.wire.federator import policy_from_json, policy_to_json

COMPONENT = "provider"

MIGRATIONS = [
    """
    CREATE TABLE provider_policy (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        policy TEXT NOT NULL
    );
    CREATE TABLE provider_quotes (
        ref TEXT PRIMARY KEY,
        consumer_id TEXT NOT NULL,
        federation_id TEXT NOT NULL,
        app BLOB NOT NULL,
        price INTEGER NOT NULL,
        valid_until REAL NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE TABLE provider_commitments (
        consumer_id TEXT NOT NULL,
        federation_id TEXT NOT NULL,
        offer_ref TEXT NOT NULL,
        app BLOB NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (consumer_id, federation_id)
    );
    CREATE TABLE provider_deployments (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        app_instance_id TEXT NOT NULL UNIQUE,
        federation_id TEXT NOT NULL,
        consumer_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        offer_ref TEXT NOT NULL,
        state INTEGER NOT NULL,
        endpoint BLOB,
        error TEXT,
        notice BLOB NOT NULL
    );
    CREATE INDEX provider_deployments_key ON provider_deployments (consumer_id, federation_id);
    """
]

Key = tuple[str, str]  # (consumer_id, federation_id)


@dataclass
class QuoteRow:
    ref: str
    consumer_id: str
    federation_id: str
    app: AppSpec
    price: int
    valid_until: float
    received_at: float


@dataclass
class CommitmentRow:
    consumer_id: str
    federation_id: str
    offer_ref: str
    app: AppSpec
    state: str  # accepted | deploying | deployed


@dataclass
class DeploymentRow:
    app_instance_id: str
    federation_id: str
    consumer_id: str
    caller: str
    offer_ref: str
    state: InstanceState
    endpoint: OverlayEndpoint | None
    error: Problem | None
    notice: bytes


def _app_bytes(app: AppSpec) -> bytes:
    return app_to_proto(app).SerializeToString()


def _app(raw: bytes) -> AppSpec:
    return app_from_proto(common_pb2.AppSpec.FromString(raw))


class ProviderStore:
    """Typed rows over one :class:`mecfed.storage.Database`; ``None`` keeps
    them in a private in-memory database (nothing survives the process)."""

    def __init__(self, db: Database | None = None) -> None:
        self.db = db if db is not None else Database(MEMORY)
        self.db.migrate(COMPONENT, MIGRATIONS)

    # --- policy ---------------------------------------------------------------------------

    def policy(self) -> OfferPolicy | None:
        row = self.db.query_one("SELECT policy FROM provider_policy WHERE id = 1")
        return policy_from_json(json.loads(row["policy"])) if row else None

    def save_policy(self, policy: OfferPolicy) -> None:
        self.db.execute(
            "INSERT INTO provider_policy (id, policy) VALUES (1, ?) "
            "ON CONFLICT(id) DO UPDATE SET policy = excluded.policy",
            (json.dumps(policy_to_json(policy)),),
        )

    # --- binding quotes -------------------------------------------------------------------

    def quotes(self) -> Iterator[QuoteRow]:
        for r in self.db.query("SELECT * FROM provider_quotes"):
            yield QuoteRow(
                r["ref"],
                r["consumer_id"],
                r["federation_id"],
                _app(r["app"]),
                r["price"],
                r["valid_until"],
                r["received_at"],
            )

    def save_quote(self, q: QuoteRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO provider_quotes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                q.ref,
                q.consumer_id,
                q.federation_id,
                _app_bytes(q.app),
                q.price,
                q.valid_until,
                q.received_at,
            ),
        )

    def delete_quotes(self, refs: list[str]) -> None:
        with self.db.transaction() as tx:
            for ref in refs:
                tx.execute("DELETE FROM provider_quotes WHERE ref = ?", (ref,))

    # --- commitments (the capacity ledger) ------------------------------------------------

    def commitments(self) -> Iterator[CommitmentRow]:
        for r in self.db.query("SELECT * FROM provider_commitments"):
            yield CommitmentRow(
                r["consumer_id"], r["federation_id"], r["offer_ref"], _app(r["app"]), r["state"]
            )

    def commit(self, c: CommitmentRow, quote_ref: str) -> None:
        """Records the commitment and drops the quote it came from, at once."""
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO provider_commitments VALUES (?, ?, ?, ?, ?)",
                (c.consumer_id, c.federation_id, c.offer_ref, _app_bytes(c.app), c.state),
            )
            tx.execute("DELETE FROM provider_quotes WHERE ref = ?", (quote_ref,))

    def set_commitment_state(self, key: Key, state: str) -> None:
        self.db.execute(
            "UPDATE provider_commitments SET state = ? WHERE consumer_id = ? AND federation_id = ?",
            (state, *key),
        )

    def delete_commitment(self, key: Key) -> None:
        self.db.execute(
            "DELETE FROM provider_commitments WHERE consumer_id = ? AND federation_id = ?", key
        )

    # --- deployments ----------------------------------------------------------------------

    def deployments(self) -> Iterator[DeploymentRow]:
        """Oldest first."""
        for r in self.db.query("SELECT * FROM provider_deployments ORDER BY seq"):
            endpoint = None
            if r["endpoint"] is not None:
                msg = common_pb2.OverlayEndpoint.FromString(r["endpoint"])
                endpoint = endpoint_from_proto(msg, "endpoint")
            error = Problem(**json.loads(r["error"])) if r["error"] else None
            yield DeploymentRow(
                r["app_instance_id"],
                r["federation_id"],
                r["consumer_id"],
                r["caller"],
                r["offer_ref"],
                InstanceState(r["state"]),
                endpoint,
                error,
                bytes(r["notice"]),
            )

    def save_deployment(self, d: DeploymentRow) -> None:
        endpoint = endpoint_to_proto(d.endpoint).SerializeToString() if d.endpoint else None
        error = (
            json.dumps({"title": d.error.title, "status": d.error.status, "detail": d.error.detail})
            if d.error
            else None
        )
        self.db.execute(
            "INSERT INTO provider_deployments (app_instance_id, federation_id, consumer_id,"
            " caller, offer_ref, state, endpoint, error, notice) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(app_instance_id) DO UPDATE SET state = excluded.state,"
            " endpoint = excluded.endpoint, error = excluded.error, notice = excluded.notice",
            (
                d.app_instance_id,
                d.federation_id,
                d.consumer_id,
                d.caller,
                d.offer_ref,
                int(d.state),
                endpoint,
                error,
                d.notice,
            ),
        )

    def delete_deployments(self, app_instance_ids: list[str]) -> None:
        with self.db.transaction() as tx:
            for app_instance_id in app_instance_ids:
                tx.execute(
                    "DELETE FROM provider_deployments WHERE app_instance_id = ?", (app_instance_id,)
                )


__all__ = ["COMPONENT", "CommitmentRow", "DeploymentRow", "Key", "ProviderStore", "QuoteRow"]
