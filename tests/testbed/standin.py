"""Stand-in for ``python -m mef|meo --config F`` in testbed tests.

Serves the gRPC health service (mTLS, with the system's certificate) on the
component's listen address, through the same :func:`mecfed.rpc.start_server`
as the real servers, and on SIGTERM stops the way they do: health turns
NOT_SERVING, then the server stops (``Server.stop``), and "stopped
gracefully" goes to the log. With ``STANDIN_DELAY=<seconds>`` it waits
before serving, to catch a bring-up in the middle; with
``STANDIN_IGNORE_TERM=1`` it ignores SIGTERM, to be killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from mecfed.config import SystemConfig
from mecfed.rpc import server_credentials, start_server

GRACEFUL = "stopped gracefully"


async def main(component: str, config_path: str) -> None:
    await asyncio.sleep(float(os.environ.get("STANDIN_DELAY", "0")))
    cfg = SystemConfig.load(config_path)
    own = cfg.system_id
    listen = cfg.mef_listen if component == "mef" else cfg.meo_listen
    server = await start_server(
        listen, server_credentials(cfg.tls), [], access=lambda _method, peer: peer == own
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if os.environ.get("STANDIN_IGNORE_TERM") == "1":
        loop.add_signal_handler(signal.SIGTERM, lambda: None)
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"{component} serving on {listen}", flush=True)
    await stop.wait()
    await server.stop(0.5)
    print(f"{component} {GRACEFUL}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
