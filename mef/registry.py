"""MEC system registration and discovery (ETSI GS MEC 040, Mfm side).

The registry is the federator's in-memory set of known MEC systems. All
mutating methods are ``async`` but contain no ``await`` between checking and
changing state, so each one is atomic on the event loop without a lock.

Watchers get a bounded queue each. Writers never wait for a watcher: one whose
queue is full is dropped (its iterator then raises ResourceExhausted, so the
client knows to watch again) instead of stalling registrations for everybody.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import replace
from enum import StrEnum

from mecfed.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from mecfed.model import EndPoint, SystemRecord

MAX_SYSTEMS = 10_000
WATCH_QUEUE_SIZE = 256


class Change(StrEnum):
    """Kind of a watch event; compares equal to its plain string value."""

    EXISTING = "existing"
    REGISTERED = "registered"
    UPDATED = "updated"
    DEREGISTERED = "deregistered"


WatchEvent = tuple[Change, list[SystemRecord]]


class SystemWatch:
    """Async iterator over registry changes; first yields the current set.

    Subscribes on creation, so no change between ``watch()`` and the first
    ``__anext__`` is lost. Use ``async with`` or ``aclose()`` to unsubscribe
    at once; dropping the last reference or being cancelled also unsubscribes.
    """

    def __init__(self, registry: SystemRegistry, snapshot: list[SystemRecord], size: int):
        self._registry = registry
        self._queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(maxsize=size)
        self._first: WatchEvent | None = (Change.EXISTING, snapshot)
        self._closed = False
        self.dropped = False

    def offer(self, event: WatchEvent) -> bool:
        """Queues ``event``; False if the watcher is too slow and must go."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            return False
        return True

    def __aiter__(self) -> SystemWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._first is not None:
            event, self._first = self._first, None
            return event
        if not self._closed or not self._queue.empty():
            try:
                item = await self._queue.get()
            except BaseException:
                # Cancelled (e.g. the gRPC client went away): stop receiving.
                self.close()
                raise
            if item is not None:
                return item
        # Closed and drained.
        if self.dropped:
            raise ResourceExhausted(
                f"system watch fell more than {self._queue.maxsize} changes behind "
                "and was dropped; watch again"
            )
        raise StopAsyncIteration

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._registry.unsubscribe(self)
        # Wake a consumer blocked in __anext__; if the queue is full nobody is.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> SystemWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class SystemRegistry:
    """The set of MEC systems this federator knows, with change watching."""

    def __init__(
        self, *, max_systems: int = MAX_SYSTEMS, watch_queue_size: int = WATCH_QUEUE_SIZE
    ) -> None:
        self._max_systems = max_systems
        self._watch_queue_size = watch_queue_size
        self._by_id: dict[str, SystemRecord] = {}
        self._id_by_name: dict[str, str] = {}
        # Weak so a watcher abandoned without close() does not linger.
        self._watchers: weakref.WeakSet[SystemWatch] = weakref.WeakSet()

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    async def register(self, record: SystemRecord) -> SystemRecord:
        """Adds a system and assigns its id. ``info.system_id`` must be empty."""
        if record.system_id:
            raise InvalidArgument.field(
                "system_info.system_id", "must be empty on register; the federator assigns it"
            )
        if record.system_name in self._id_by_name:
            raise AlreadyExists(
                f"system_name {record.system_name!r} is already registered as "
                f"{self._id_by_name[record.system_name]}"
            )
        if len(self._by_id) >= self._max_systems:
            raise ResourceExhausted(f"at most {self._max_systems} systems can be registered")
        record = replace(record, system_id=str(uuid.uuid4()))
        self._by_id[record.system_id] = record
        self._id_by_name[record.system_name] = record.system_id
        self._publish(Change.REGISTERED, record)
        return record

    def preload(self, records: Iterable[SystemRecord]) -> None:
        """Adds systems whose ids are fixed by configuration (this system and
        its pre-registered peers) before the server takes requests."""
        for record in records:
            if not record.system_id:
                raise ValueError("preloaded systems need a system_id")
            owner = self._id_by_name.get(record.system_name)
            if owner is not None and owner != record.system_id:
                raise ValueError(f"system_name {record.system_name!r} is preloaded twice")
            self._by_id[record.system_id] = record
            self._id_by_name[record.system_name] = record.system_id

    async def get(self, system_id: str) -> SystemRecord:
        return self._lookup(system_id)

    async def list(
        self,
        system_ids: Iterable[str] = (),
        names: Iterable[str] = (),
        providers: Iterable[str] = (),
    ) -> list[SystemRecord]:
        """Systems in registration order. An empty filter matches everything;
        values are OR-ed within a filter and AND-ed across filters."""
        ids, name_set, provider_set = set(system_ids), set(names), set(providers)
        return [
            r
            for r in self._by_id.values()
            if (not ids or r.system_id in ids)
            and (not name_set or r.system_name in name_set)
            and (not provider_set or r.system_provider in provider_set)
        ]

    async def update(
        self,
        system_id: str,
        name: str | None = None,
        endpoint: EndPoint | None = None,
    ) -> SystemRecord:
        """Renames and/or re-points a system. ``None`` (or an empty name, as in
        the proto) leaves a field unchanged."""
        old = self._lookup(system_id)
        new = old
        if name:
            owner = self._id_by_name.get(name)
            if owner is not None and owner != system_id:
                raise AlreadyExists(f"system_name {name!r} is already registered as {owner}")
            new = replace(new, system_name=name)  # validates the name
        if endpoint is not None:
            new = replace(new, endpoint=endpoint)
        if new == old:
            return old
        del self._id_by_name[old.system_name]
        self._id_by_name[new.system_name] = system_id
        self._by_id[system_id] = new
        self._publish(Change.UPDATED, new)
        return new

    async def deregister(self, system_id: str) -> SystemRecord:
        """Removes a system and returns its last record."""
        record = self._lookup(system_id)
        del self._by_id[system_id]
        del self._id_by_name[record.system_name]
        self._publish(Change.DEREGISTERED, record)
        return record

    def watch(self) -> SystemWatch:
        """Subscribes to changes: first ("existing", all current systems),
        then one event per register/update/deregister."""
        watcher = SystemWatch(self, list(self._by_id.values()), self._watch_queue_size)
        self._watchers.add(watcher)
        return watcher

    def _lookup(self, system_id: str) -> SystemRecord:
        if not system_id:
            raise InvalidArgument.field("system_id", "is required")
        try:
            return self._by_id[system_id]
        except KeyError:
            raise NotFound(f"system_id {system_id[:80]!r} is not registered") from None

    def _publish(self, change: Change, record: SystemRecord) -> None:
        for watcher in list(self._watchers):
            if not watcher.offer((change, [record])):
                watcher.close()

    def unsubscribe(self, watcher: SystemWatch) -> None:
        self._watchers.discard(watcher)
