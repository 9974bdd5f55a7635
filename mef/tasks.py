"""Background tasks owned by one object, stopped together within a bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """Spawns guarded tasks (a failure is logged, never lost silently) and
    cancels them all on :meth:`close`, waiting at most ``close_timeout``."""

    def __init__(self, owner: str, close_timeout: float = 3.0) -> None:
        self._owner = owner
        self._close_timeout = close_timeout
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: %s: %s", self._owner, what, exc)
                return None

        task = asyncio.create_task(guarded(), name=f"{self._owner}: {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Cancelled before it ran, ``coro`` was never awaited: close it so it
        # does not warn (a no-op for one that ran).
        task.add_done_callback(lambda _t: coro.close())
        return task

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self._close_timeout)
            for task in stuck:
                log.warning(
                    "task %s did not stop within %s s", task.get_name(), self._close_timeout
                )


__all__ = ["TaskSet"]
