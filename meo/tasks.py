"""Work that a cancellation must not cut in half.

A VIM or netlink call runs in a worker thread (``asyncio.to_thread``).
Cancelling the coroutine that awaits it does not stop the thread: the
container or link is still made, after the caller has rolled back and gone.
:func:`undo_if_cancelled` waits for such work to end when its caller is
cancelled, undoes what it made, and only then lets the cancellation through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def wait_out(task: asyncio.Future[Any]) -> None:
    """Until ``task`` is done, however often the caller is cancelled meanwhile."""
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            continue


async def undo_if_cancelled(
    work: Awaitable[T], undo: Callable[[T], Awaitable[object]], what: str
) -> T:
    """``await work``; if the caller is cancelled while it runs, lets it
    finish, runs ``undo`` on its result, then re-raises the cancellation."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await wait_out(task)
        if not task.cancelled() and task.exception() is None:
            log.info("cancelled while %s; undoing what it made", what)
            cleanup = asyncio.ensure_future(undo(task.result()))
            await wait_out(cleanup)
            if not cleanup.cancelled() and (exc := cleanup.exception()) is not None:
                log.error("could not undo %s after a cancellation", what, exc_info=exc)
        raise


__all__ = ["undo_if_cancelled", "wait_out"]
