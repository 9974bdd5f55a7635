"""Test-only launcher: runs one MEO inside an emulated host's network
namespace, serving on a unix socket.

It enters the namespace before anything else is imported, so every thread
(gRPC's included) lives there. ``--fail-once STEP`` makes the first overlay
set-up fail after STEP (to test the all-or-nothing rollback);
``--crash-at STEP`` kills the process right after STEP (``instance`` after
a container started, or an overlay step), as a kill -9 would: between an
intent and its record.
"""

from __future__ import annotations

import ctypes
import os
import sys


def _enter(netns_path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(netns_path, os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), f"setns {netns_path}")
    os.close(fd)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--netns", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--fail-once", default="")
    parser.add_argument("--crash-at", default="")
    parser.add_argument("--cleanup", action="store_true", help="cleanup_all and exit")
    args = parser.parse_args()
    _enter(args.netns)

    import asyncio
    import logging
    import signal

    from mecfed.config import SystemConfig
    from mecfed.errors import DeploymentFailed
    from meo.server import allow_any_caller, build_orchestrator, serve

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    async def run() -> None:
        config = SystemConfig.load(args.config)
        server = await serve(config, None, listen=f"unix:{args.socket}", access=allow_any_caller)
        orch = server.orchestrator
        if args.fail_once:

            def fail(step: str) -> None:
                if step == args.fail_once:
                    orch.fail_after = None
                    raise DeploymentFailed(f"injected failure after {step}")

            orch.fail_after = fail
        if args.crash_at:

            def crash(step: str) -> None:
                if step == args.crash_at:
                    os._exit(137)  # no cleanup, no flush: as kill -9

            orch.fail_after = crash
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        try:
            await orch.cleanup_all()
        finally:
            await server.stop(None)

    if args.cleanup:
        asyncio.run(build_orchestrator(SystemConfig.load(args.config)).cleanup_all())
        return
    asyncio.run(run())


if __name__ == "__main__":
    main()
