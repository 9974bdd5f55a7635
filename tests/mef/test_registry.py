"""Tests for mef.registry: MEC 040 system registration, discovery and watch.

The registry takes model records only; requests are converted (and
validated) by mecfed.wire first, so the validation tests below go through
``system_from_proto``/``system_update_from_proto`` as the servicer does. The
records themselves are tested in tests/model/test_system.py, their proto
conversion in tests/wire/test_common.py and the watch notification in
tests/wire/test_federator.py.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import pytest

from mecfed.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from mecfed.model import EndPoint, SystemRecord
from mecfed.v1 import common_pb2, federator_pb2
from mecfed.wire.common import endpoint_info_from_proto, system_from_proto, system_to_proto
from mecfed.wire.federator import notification_to_proto, system_update_from_proto
from mef.registry import Change, SystemRegistry
from tests.model.support import invalid


def info_proto(name: str = "edge-a", provider: str = "op-a", **kw: Any) -> common_pb2.SystemInfo:
    msg = common_pb2.SystemInfo(system_name=name, system_provider=provider, **kw)
    if "endpoint" not in kw:
        msg.endpoint.uris.uris.append(f"https://{name}.example:50051")
    return msg


def info(name: str = "edge-a", provider: str = "op-a", **kw: Any) -> SystemRecord:
    """A RegisterSystem request's system_info as the servicer hands it over."""
    return system_from_proto(info_proto(name, provider, **kw))


# --- SystemRegistry -------------------------------------------------------


async def test_register_assigns_uuid_and_get_returns_it() -> None:
    reg = SystemRegistry()
    rec = await reg.register(info())
    assert uuid.UUID(rec.system_id).version == 4
    assert rec.system_name == "edge-a" and rec.system_provider == "op-a"
    assert await reg.get(rec.system_id) == rec
    assert len(reg) == 1


async def test_register_accepts_record() -> None:
    reg = SystemRegistry()
    rec = await reg.register(SystemRecord("", "n", "p"))
    assert rec.system_id
    assert rec.endpoint is None
    assert rec == SystemRecord(rec.system_id, "n", "p")


async def test_register_rejects_given_id() -> None:
    reg = SystemRegistry()
    with invalid("system_info.system_id", "must be empty on register"):
        await reg.register(info(system_id="mine"))
    assert len(reg) == 0


async def test_register_validates_fields() -> None:
    # The request is validated on its way in (mecfed.wire), fields named
    # under their path in RegisterSystemRequest; nothing reaches the registry.
    reg = SystemRegistry()
    with invalid("system_info.system_name", "is required"):
        await reg.register(info(name=""))
    with invalid("system_info.system_provider", "is 129"):
        await reg.register(info(provider="p" * 129))
    bad = info_proto()
    bad.endpoint.Clear()
    bad.endpoint.addresses.addresses.add(host="h", port=0)
    with invalid("system_info.endpoint.addresses[0].port", "is 0"):
        await reg.register(system_from_proto(bad))
    bad.endpoint.Clear()
    bad.endpoint.uris.uris.append("")
    with invalid("system_info.endpoint.uris[0]", "is required"):
        await reg.register(system_from_proto(bad))
    bad.endpoint.Clear()
    with invalid("system_info.endpoint", "must set exactly one of"):
        await reg.register(system_from_proto(bad))
    assert len(reg) == 0


async def test_register_duplicate_name() -> None:
    reg = SystemRegistry()
    first = await reg.register(info("dup", "a"))
    with pytest.raises(AlreadyExists, match="system_name 'dup'") as exc:
        await reg.register(info("dup", "b"))
    assert first.system_id in exc.value.message


async def test_register_bound() -> None:
    reg = SystemRegistry(max_systems=2)
    await reg.register(info("a"))
    await reg.register(info("b"))
    with pytest.raises(ResourceExhausted, match="at most 2 systems"):
        await reg.register(info("c"))
    # Room again after a deregistration.
    (victim,) = await reg.list(names=["a"])
    await reg.deregister(victim.system_id)
    await reg.register(info("c"))


async def test_default_bound_is_10000() -> None:
    from mef import registry

    assert registry.MAX_SYSTEMS == 10_000
    assert SystemRegistry()._max_systems == 10_000


async def test_get_unknown_and_empty() -> None:
    reg = SystemRegistry()
    with pytest.raises(NotFound, match="system_id 'nope' is not registered"):
        await reg.get("nope")
    with pytest.raises(InvalidArgument, match="system_id is required"):
        await reg.get("")


async def test_list_filters() -> None:
    reg = SystemRegistry()
    a = await reg.register(info("a", "op1"))
    b = await reg.register(info("b", "op1"))
    c = await reg.register(info("c", "op2"))
    assert await reg.list() == [a, b, c]
    assert await reg.list(system_ids=[a.system_id, c.system_id]) == [a, c]
    assert await reg.list(names=["b", "c"]) == [b, c]
    assert await reg.list(providers=["op1"]) == [a, b]
    # AND across fields, OR within a field.
    assert await reg.list(names=["a", "c"], providers=["op1"]) == [a]
    assert await reg.list(system_ids=[b.system_id], names=["a"]) == []
    assert await reg.list(names=["zzz"]) == []


async def test_update_name_and_endpoint() -> None:
    reg = SystemRegistry()
    rec = await reg.register(info("a"))
    new_ep = EndPoint(fqdn=("a2.example",))
    updated = await reg.update(rec.system_id, name="a2", endpoint=new_ep)
    assert updated.system_name == "a2" and updated.endpoint == new_ep
    assert updated.system_id == rec.system_id
    assert await reg.get(rec.system_id) == updated
    # The old name is free again, the new one is taken.
    await reg.register(info("a"))
    with pytest.raises(AlreadyExists):
        await reg.register(info("a2"))


async def test_update_from_proto_endpoint_and_keeps_unset_fields() -> None:
    reg = SystemRegistry()
    rec = await reg.register(info("a"))
    request = federator_pb2.UpdateSystemRequest(
        system_id=rec.system_id, endpoint=common_pb2.EndPointInfo(alternative="x")
    )
    system_id, name, endpoint = system_update_from_proto(request)
    assert (system_id, name) == (rec.system_id, None)
    updated = await reg.update(system_id, name=name, endpoint=endpoint)
    assert updated.system_name == "a"
    assert updated.endpoint == EndPoint(alternative="x")
    # None and "" (the proto's "unchanged") leave everything as is.
    assert await reg.update(rec.system_id, name="") == updated
    assert await reg.update(rec.system_id) == updated
    unchanged = system_update_from_proto(federator_pb2.UpdateSystemRequest(system_id=rec.system_id))
    assert unchanged == (rec.system_id, None, None)
    assert await reg.update(unchanged[0], name=unchanged[1], endpoint=unchanged[2]) == updated


async def test_update_errors() -> None:
    reg = SystemRegistry()
    a = await reg.register(info("a"))
    await reg.register(info("b"))
    with pytest.raises(AlreadyExists, match="system_name 'b'"):
        await reg.update(a.system_id, name="b")
    # Renaming to its own name is fine.
    assert (await reg.update(a.system_id, name="a")).system_name == "a"
    with pytest.raises(NotFound, match="'ghost'"):
        await reg.update("ghost", name="c")
    with invalid("system_name", "is 129"):
        await reg.update(a.system_id, name="n" * 129)
    with invalid("system_name", "is required"):
        await reg.update(a.system_id, name="  ")
    with invalid("endpoint", "exactly one of"):
        await reg.update(
            *system_update_from_proto(
                federator_pb2.UpdateSystemRequest(
                    system_id=a.system_id, endpoint=common_pb2.EndPointInfo()
                )
            )
        )
    empty = common_pb2.EndPointInfo()
    empty.fqdn.SetInParent()
    with invalid("endpoint.fqdn", "must not be empty"):
        await reg.update(a.system_id, endpoint=endpoint_info_from_proto(empty))
    with pytest.raises(InvalidArgument, match="system_id is required"):
        await reg.update("", name="c")
    assert await reg.get(a.system_id) == a
    # A failed update changes nothing: the names are still where they were.
    with pytest.raises(AlreadyExists):
        await reg.register(info("a"))
    assert (await reg.list(names=["b"]))[0].system_name == "b"


async def test_deregister() -> None:
    reg = SystemRegistry()
    rec = await reg.register(info("a"))
    assert await reg.deregister(rec.system_id) == rec
    with pytest.raises(NotFound):
        await reg.get(rec.system_id)
    with pytest.raises(NotFound):
        await reg.deregister(rec.system_id)
    # The name can be registered again, under a new id.
    again = await reg.register(info("a"))
    assert again.system_id != rec.system_id


# --- watch ----------------------------------------------------------------


async def test_watch_ordering() -> None:
    reg = SystemRegistry()
    a = await reg.register(info("a"))
    async with reg.watch() as watch:
        assert await anext(watch) == (Change.EXISTING, [a])
        b = await reg.register(info("b"))
        b2 = await reg.update(b.system_id, name="b2")
        await reg.update(b.system_id, name="b2")  # no change, no event
        await reg.deregister(a.system_id)
        events = [await anext(watch) for _ in range(3)]
    assert events == [
        ("registered", [b]),
        ("updated", [b2]),
        ("deregistered", [a]),
    ]
    assert reg.watcher_count == 0


async def test_watch_snapshot_taken_at_watch_call() -> None:
    reg = SystemRegistry()
    watch = reg.watch()
    rec = await reg.register(info("a"))  # after watch(), before first anext
    assert await anext(watch) == ("existing", [])
    assert await anext(watch) == ("registered", [rec])
    await watch.aclose()


async def test_watch_multiple_watchers_each_get_everything() -> None:
    reg = SystemRegistry()
    w1, w2 = reg.watch(), reg.watch()
    rec = await reg.register(info("a"))
    for w in (w1, w2):
        assert [await anext(w), await anext(w)] == [("existing", []), ("registered", [rec])]
        w.close()
    assert reg.watcher_count == 0


async def test_watch_cleanup_on_break() -> None:
    reg = SystemRegistry()
    await reg.register(info("a"))
    async for change, _records in reg.watch():
        assert change == "existing"
        break
    gc.collect()
    assert reg.watcher_count == 0


async def test_watch_cleanup_on_cancel() -> None:
    reg = SystemRegistry()
    seen: list[str] = []

    async def consume() -> None:
        async for change, _ in reg.watch():
            seen.append(change)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert reg.watcher_count == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["existing"]
    assert reg.watcher_count == 0


async def test_watch_close_wakes_waiting_consumer() -> None:
    reg = SystemRegistry()
    watch = reg.watch()
    await anext(watch)
    waiter = asyncio.create_task(anext(watch))
    await asyncio.sleep(0)
    watch.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 1)


async def test_slow_watcher_is_dropped_not_blocking() -> None:
    reg = SystemRegistry(watch_queue_size=2)
    slow = reg.watch()
    fast_seen: list[str] = []
    fast = reg.watch()
    for i in range(4):  # never blocks although nobody reads `slow`
        await reg.register(info(f"s{i}"))
        fast_seen.append((await anext(fast))[0])
        if i == 0:
            fast_seen.append((await anext(fast))[0])
    assert fast_seen[:2] == ["existing", "registered"]
    assert slow.dropped
    assert reg.watcher_count == 1  # only `fast`
    # The slow watcher still gets what was queued, then a clear error.
    got = [await anext(slow) for _ in range(3)]
    assert [c for c, _ in got] == ["existing", "registered", "registered"]
    with pytest.raises(ResourceExhausted, match="dropped; watch again"):
        await anext(slow)
    fast.close()


async def test_abandoned_watcher_is_garbage_collected() -> None:
    reg = SystemRegistry()
    reg.watch()  # never iterated, never closed
    gc.collect()
    assert reg.watcher_count == 0


def test_notification_to_proto() -> None:
    rec = SystemRecord("id1", "n", "p", EndPoint(alternative="x"))
    msg = notification_to_proto(Change.UPDATED, [rec])
    assert msg.change == federator_pb2.SystemUpdateNotification.CHANGE_UPDATED
    assert list(msg.updated_system_info) == [system_to_proto(rec)]


async def test_watch_events_convert_to_notifications() -> None:
    reg = SystemRegistry()
    a = await reg.register(info("a"))
    N = federator_pb2.SystemUpdateNotification
    async with reg.watch() as watch:
        b = await reg.register(info("b"))
        b2 = await reg.update(b.system_id, endpoint=EndPoint(fqdn=("b.example",)))
        await reg.deregister(a.system_id)
        got = [notification_to_proto(*(await anext(watch))) for _ in range(4)]
    assert [m.change for m in got] == [
        N.CHANGE_EXISTING,
        N.CHANGE_REGISTERED,
        N.CHANGE_UPDATED,
        N.CHANGE_DEREGISTERED,
    ]
    assert [[system_from_proto(i) for i in m.updated_system_info] for m in got] == [
        [a],
        [b],
        [b2],
        [a],
    ]


# --- preload ----------------------------------------------------------------


async def test_preload_keeps_configured_ids_without_events() -> None:
    reg = SystemRegistry()
    watch = reg.watch()
    me = SystemRecord("sys-1", "me", "op")
    peer = SystemRecord("sys-2", "peer", "op2", EndPoint(uris=("https://peer:1",)))
    reg.preload([me, peer])
    assert len(reg) == 2
    assert await reg.get("sys-1") == me and await reg.get("sys-2") == peer
    assert await reg.list(providers=["op2"]) == [peer]
    # Their names are taken like any registered system's.
    with pytest.raises(AlreadyExists, match="system_name 'me' is already registered as sys-1"):
        await reg.register(SystemRecord("", "me", "other"))
    # Preloading happens before the server serves: it publishes nothing.
    assert await anext(watch) == ("existing", [])
    rec = await reg.register(SystemRecord("", "new", "op"))
    assert await anext(watch) == ("registered", [rec])
    watch.close()


def test_preload_needs_ids() -> None:
    reg = SystemRegistry()
    with pytest.raises(ValueError, match="need a system_id"):
        reg.preload([SystemRecord("", "n", "p")])
