"""The consumer's durable federation store (mef.federations) on a real
sqlite file: what is written survives reopening, request ids are unique,
watches end with the final state."""

from __future__ import annotations

import asyncio

import pytest

from mecfed.errors import FailedPrecondition, NotFound, ResourceExhausted
from mecfed.model import AppSpec, Federation, FederationState, Requirements, TrafficReport
from mecfed.storage import Database
from mef.federations import COMPONENT, FederationStore, PendingRelease


def federation(fid: str = "fed-1", created_at: float = 1.0) -> Federation:
    return Federation(
        fid,
        "svc",
        AppSpec("mecfed/echo:1"),
        Requirements(100),
        "mec-00",
        "direct",
        created_at=created_at,
    )


def test_records_survive_reopening(tmp_path):
    path = tmp_path / "mef.db"
    store = FederationStore(Database(path))
    fed = store.add(federation(), "order-1")
    fed = store.put(fed.evolve(state=FederationState.ESTABLISHED, provider_id="p1", price=7))
    fed = store.put(
        fed.evolve(
            state=FederationState.DEGRADED,
            reason="10/20 echoes answered",
            liveness=TrafficReport(20, 10, 0.3, 0.5, measured_at=5.0),
        )
    )
    store.set_trace("fed-1", "00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    store.owe_release("fed-1", "p0", "inst-0")
    store.db.close()

    again = FederationStore(Database(path))
    back = again.get("fed-1")
    assert back.state == FederationState.DEGRADED
    assert (back.provider_id, back.price) == ("p1", 7)
    assert [(h.state, h.reason) for h in back.history] == [
        (FederationState.ESTABLISHED, ""),
        (FederationState.DEGRADED, "10/20 echoes answered"),
    ]
    assert back.liveness is not None and back.liveness.received == 10
    assert again.by_request_id("order-1") == back
    assert again.trace_of("fed-1").startswith("00-aaaa")
    assert again.pending_releases() == [PendingRelease("fed-1", "p0", "inst-0")]
    assert again.db.version(COMPONENT) == 1


def test_request_id_is_unique_even_past_the_cache(tmp_path):
    path = tmp_path / "mef.db"
    first = FederationStore(Database(path))
    second = FederationStore(Database(path))  # a second writer of the same file
    a = first.add(federation("fed-a"), "order-1")
    b = second.add(federation("fed-b"), "order-1")
    assert a.federation_id == b.federation_id == "fed-a"
    with pytest.raises(NotFound):
        second.get("fed-b")
    assert second.add(federation("fed-c"), "order-1").federation_id == "fed-a"


def test_pending_release_retry_state(tmp_path):
    store = FederationStore(Database(tmp_path / "mef.db"))
    store.add(federation())
    store.owe_release("fed-1", "p1")
    store.owe_release("fed-1", "p1", "inst-1")  # learnt later: kept
    store.owe_release("fed-1", "p1")  # not forgotten by a later call without it
    store.release_failed("fed-1", "p1", "unreachable", 10.0)
    store.release_failed("fed-1", "p1", "still unreachable", 20.0)
    assert store.pending_releases("fed-1") == [
        PendingRelease("fed-1", "p1", "inst-1", 2, "still unreachable")
    ]
    store.released("fed-1", "p1")
    assert store.pending_releases() == []


def test_newer_schema_is_refused(tmp_path):
    db = Database(tmp_path / "mef.db")
    FederationStore(db)
    db.execute("UPDATE schema_version SET version = 99 WHERE component = ?", (COMPONENT,))
    with pytest.raises(FailedPrecondition, match="refusing to downgrade"):
        FederationStore(db)


def test_list_is_newest_first_and_filters():
    store = FederationStore()
    store.add(federation("fed-old", 1.0))
    store.add(federation("fed-new", 2.0))
    store.put(store.get("fed-old").evolve(state=FederationState.FAILED))
    assert [f.federation_id for f in store.list()] == ["fed-new", "fed-old"]
    assert [f.federation_id for f in store.list([FederationState.FAILED])] == ["fed-old"]


async def test_a_slow_watcher_still_gets_the_final_state():
    store = FederationStore()
    fed = store.add(federation())
    stream = store.watch("fed-1")
    first = await anext(stream)
    assert first.state == FederationState.REQUESTED
    # Far more versions than the watcher's queue holds, then the final one.
    for i in range(500):
        fed = store.put(fed.evolve(offers=(), price=i))
    store.put(fed.evolve(state=FederationState.FAILED))
    seen = [f async for f in stream]
    assert seen[-1].state == FederationState.FAILED
    assert len(seen) < 500


async def test_follow_after_terminal_ends_with_terminated():
    store = FederationStore()
    fed = store.add(federation())

    async def collect() -> list[FederationState]:
        return [f.state async for f in store.watch("fed-1", follow_after_terminal=True)]

    watching = asyncio.create_task(collect())
    await asyncio.sleep(0)
    for state in (
        FederationState.ESTABLISHED,
        FederationState.DEGRADED,
        FederationState.ESTABLISHED,
        FederationState.TERMINATING,
        FederationState.TERMINATED,
    ):
        fed = store.put(fed.evolve(state=state))
        await asyncio.sleep(0)
    states = await asyncio.wait_for(watching, 2)
    assert states[-1] == FederationState.TERMINATED
    assert FederationState.DEGRADED in states


def test_ended_federations_make_room_when_the_store_is_full(tmp_path, monkeypatch):
    import mef.federations as module

    monkeypatch.setattr(module, "MAX_FEDERATIONS", 10)
    store = FederationStore(Database(tmp_path / "mef.db"))
    for i in range(10):
        fed = store.add(federation(f"fed-{i}", float(i)), f"order-{i}")
        if i < 5:
            store.put(fed.evolve(state=FederationState.FAILED, updated_at=float(i)))
    store.owe_release("fed-0", "p1")  # still owed: kept
    store.add(federation("fed-new", 11.0))
    assert "fed-1" not in {f.federation_id for f in store.list()}
    assert store.get("fed-0").state == FederationState.FAILED
    assert store.by_request_id("order-1") is None
    reopened = FederationStore(Database(tmp_path / "mef.db"))
    assert len(reopened) == len(store) == 10
    # Live ones are never dropped: a store full of them refuses.
    for i in range(5, 10):
        store.get(f"fed-{i}")
    store.add(federation("fed-new2", 12.0))
    with pytest.raises(ResourceExhausted):
        for j in range(10):
            store.add(federation(f"fed-more-{j}", 13.0 + j))
