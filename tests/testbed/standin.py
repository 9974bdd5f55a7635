"""Stand-in for ``python -m mef|meo --config F`` in testbed tests.

Serves the gRPC health service (mTLS, with the system's certificate) on the
component's listen address and exits cleanly on SIGTERM. With
``STANDIN_DELAY=<seconds>`` it waits before serving, to catch a bring-up
in the middle.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from mecfed.config import SystemConfig
from mecfed.security import PeerAuthorizer, server_credentials


async def main(component: str, config_path: str) -> None:
    await asyncio.sleep(float(os.environ.get("STANDIN_DELAY", "0")))
    cfg = SystemConfig.load(config_path)
    own = cfg.system_id
    server = grpc.aio.server(interceptors=[PeerAuthorizer(lambda _m, peer: peer == own)])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    listen = cfg.mef_listen if component == "mef" else cfg.meo_listen
    server.add_secure_port(listen, server_credentials(cfg.tls))
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0.5)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
