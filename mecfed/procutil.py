"""Running a mecfed server process: logging set-up and clean shutdown on
SIGTERM/SIGINT (the testbed stops servers with SIGTERM and expects them to
release what they hold)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any


def setup_logging(name: str) -> None:
    level = os.environ.get("MECFED_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )


def run_until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], name: str) -> None:
    """Runs ``main(stop)``; SIGTERM/SIGINT set ``stop`` and ``main`` shuts
    down by itself. Not cancelling it matters: a cancelled task's clean-up
    (server stop, span flush) can be cut short by its own pending
    cancellation, and then the last spans of a federation are lost."""
    setup_logging(name)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
