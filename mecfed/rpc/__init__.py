"""The gRPC edge shared by every mecfed server and client: services from
plain objects with the one error mapping, mutual TLS, authorisation,
health, reflection and graceful shutdown."""

from mecfed.rpc.security import peer_identity, secure_channel, server_credentials
from mecfed.rpc.server import AccessPolicy, Server, start_server
from mecfed.rpc.status import error_from_rpc, status_of

__all__ = [
    "AccessPolicy",
    "Server",
    "error_from_rpc",
    "peer_identity",
    "secure_channel",
    "server_credentials",
    "start_server",
    "status_of",
]
