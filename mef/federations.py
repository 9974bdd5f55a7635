"""The consumer's federation records: lookup, listing and change streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from mecfed.errors import NotFound, ResourceExhausted
from mecfed.model import Federation, FederationState

MAX_FEDERATIONS = 100_000
_WATCH_QUEUE = 64


class FederationStore:
    """Holds the newest version of every federation and tells watchers about
    each new version. A watcher that falls behind by more than its queue is
    given the newest version only (states are snapshots, so nothing is lost
    but intermediate versions)."""

    def __init__(self) -> None:
        self._items: dict[str, Federation] = {}
        self._by_request: dict[str, str] = {}
        self._watchers: dict[str, set[asyncio.Queue[Federation]]] = {}

    def add(self, federation: Federation, request_id: str = "") -> None:
        if len(self._items) >= MAX_FEDERATIONS:
            raise ResourceExhausted(f"too many federations (at most {MAX_FEDERATIONS})")
        self._items[federation.federation_id] = federation
        if request_id:
            self._by_request[request_id] = federation.federation_id

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
        self._items[federation.federation_id] = federation
        for queue in self._watchers.get(federation.federation_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(federation)
        return federation

    async def watch(
        self, federation_id: str, follow_after_terminal: bool = False
    ) -> AsyncIterator[Federation]:
        current = self.get(federation_id)
        queue: asyncio.Queue[Federation] = asyncio.Queue(_WATCH_QUEUE)
        self._watchers.setdefault(federation_id, set()).add(queue)
        try:
            yield current
            last = current
            while follow_after_terminal or not last.state.terminal:
                last = await queue.get()
                yield last
        finally:
            watchers = self._watchers.get(federation_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[federation_id]
