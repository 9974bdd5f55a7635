"""``python -m meo --config FILE``: run the MEO gRPC server (mTLS from the
config's tls paths). ``--insecure`` serves without TLS (tests only);
``--cleanup`` removes everything this MEO made (after a crash) and exits."""

from __future__ import annotations

import argparse
import asyncio

from mecfed.config import SystemConfig
from meo.server import build_orchestrator, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meo", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--insecure", action="store_true", help="no TLS (tests only)")
    parser.add_argument("--cleanup", action="store_true", help="remove all this MEO made")
    parser.add_argument(
        "--cleanup-on-exit", action="store_true", help="remove everything on SIGTERM/SIGINT"
    )
    args = parser.parse_args(argv)
    if args.cleanup:
        asyncio.run(build_orchestrator(SystemConfig.load(args.config)).cleanup_all())
        return
    run(args.config, insecure=args.insecure, cleanup_on_exit=args.cleanup_on_exit)


if __name__ == "__main__":
    main()
