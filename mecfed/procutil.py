"""Running a mecfed server process: logging set-up and clean shutdown on
SIGTERM/SIGINT (the testbed stops servers with SIGTERM and expects them to
release what they hold)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any


def setup_logging(name: str) -> None:
    level = os.environ.get("MECFED_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )


def run_until_signal(main: Coroutine[Any, Any, None], name: str) -> None:
    """Runs ``main`` until it returns or the process gets SIGTERM/SIGINT, in
    which case ``main`` is cancelled so its ``finally`` blocks run."""
    setup_logging(name)

    async def runner() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(runner())
