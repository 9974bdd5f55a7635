"""Mutual TLS between MEC systems: one certificate per MEC system.

Every MEC system holds one key and one certificate signed by the federation
CA (in the testbed: :mod:`mecfed.testbed.pki`), with subject CN = system id,
SAN DNS = system id and IP SANs for its underlay address and 127.0.0.1. Its
MEF and its MEO present that certificate both as server and as client, so a
server learns *which MEC system* calls it from the TLS handshake alone and
:class:`PeerAuthorizer` decides per method whether that system may call it.

How grpcio (checked with 1.85) treats client certificates
---------------------------------------------------------
Determined empirically (see ``tests/test_security.py``):

* ``grpc.ssl_server_credentials(..., require_client_auth=False)`` maps to the
  core's ``GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE``: the server does not even
  *ask* for a client certificate. A client that has one still connects, but
  ``context.auth_context()`` then carries no ``x509_*`` keys at all (only
  ``transport_security_type``/``ssl_*``), and so does a client whose
  certificate comes from a foreign CA -- that certificate is never looked at.
  ``grpc.dynamic_ssl_server_credentials(require_client_authentication=False)``
  behaves identically. The core's "request but do not require" modes
  (``GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY``) are not reachable from
  the Python API, which only offers the boolean.
* ``require_client_auth=True`` (``..._REQUEST_AND_REQUIRE_..._AND_VERIFY``)
  is therefore the only setting under which a server can identify its
  callers. Its price: a caller without a certificate, or with one from a
  foreign CA, fails in the TLS handshake, so the *client* sees
  ``UNAVAILABLE`` ("failed to connect to all addresses ... Socket closed"),
  never ``UNAUTHENTICATED``; the server logs
  ``PEER_DID_NOT_RETURN_A_CERTIFICATE`` resp. ``CERTIFICATE_VERIFY_FAILED``.
* With a valid certificate the auth context holds ``x509_common_name``,
  ``x509_subject_alternative_name`` (DNS and IP SANs), ``peer_dns`` and
  ``x509_pem_cert``; ``peer_identity_key()`` is
  ``x509_subject_alternative_name``.

So mecfed servers require client certificates (:func:`server_credentials`);
an authenticated but unauthorised caller receives ``PERMISSION_DENIED`` from
:class:`PeerAuthorizer`. Its ``UNAUTHENTICATED`` branch ("client certificate
required") is defence in depth: it fires only on a server that was started
without client-certificate verification (e.g. an insecure debug port), where
it keeps every non-health method closed instead of trusting anonymous callers.
A caller that dials the wrong system (``expected_peer_id`` not in the server
certificate) fails on the client side with ``UNAVAILABLE`` as well
("Custom verification check failed ... Hostname Verification Check failed").
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from mecfed.config import TlsPaths

# Methods every caller may use, so standard probes and grpcurl keep working.
OPEN_METHOD_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
)

Policy = Callable[[str, str], bool]


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def server_credentials(tls: TlsPaths) -> grpc.ServerCredentials:
    """Server side of mTLS: presents this system's certificate and requires
    (and verifies against ``tls.ca``) a client certificate; see module doc."""
    return grpc.ssl_server_credentials(
        [(_read(tls.key), _read(tls.cert))],
        root_certificates=_read(tls.ca),
        require_client_auth=True,
    )


def channel_credentials(tls: TlsPaths) -> grpc.ChannelCredentials:
    """Client side of mTLS: trusts only ``tls.ca`` and presents this system's
    certificate as client certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca),
        private_key=_read(tls.key),
        certificate_chain=_read(tls.cert),
    )


def secure_channel(
    target: str,
    tls: TlsPaths,
    expected_peer_id: str,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] = (),
) -> grpc.aio.Channel:
    """An mTLS channel to ``target`` that only accepts a server whose
    certificate names ``expected_peer_id``.

    Targets are usually IP:port, so the name to check against the certificate
    must come from elsewhere: overriding the TLS target name makes gRPC verify
    the server certificate's SAN against the system id we meant to reach
    (and sends it as SNI).
    """
    opts = [("grpc.ssl_target_name_override", expected_peer_id), *options]
    return grpc.aio.secure_channel(
        target, channel_credentials(tls), options=opts, interceptors=list(interceptors) or None
    )


def peer_identity(context: grpc.aio.ServicerContext | grpc.ServicerContext) -> str | None:
    """The calling MEC system's id, from its verified client certificate:
    the one CN of its subject. None if it sent no certificate, or if the name
    is ambiguous: several CNs, or a CN with a NUL, control or surrounding
    blank character. gRPC's ``x509_common_name`` shows only one CN, cut at a
    NUL byte, so the whole subject is read instead; such a certificate must
    not be taken for the first system it happens to name."""
    auth = context.auth_context() or {}
    subjects = auth.get("x509_subject")
    if not subjects or len(subjects) != 1:
        return None
    try:
        return _identity_of(subjects[0].decode("utf-8"))
    except UnicodeDecodeError:
        return None


# RFC 2253 string of the subject, as gRPC writes it: RDNs separated by ','
# (multi-valued ones by '+'), special and non-printable characters escaped
# with a backslash.
_RDN_SEPARATOR = re.compile(r"(?<!\\)[,+]")


@functools.lru_cache(maxsize=1024)
def _identity_of(subject: str) -> str | None:
    names = [part[3:] for part in _RDN_SEPARATOR.split(subject) if part.startswith("CN=")]
    if len(names) != 1:
        return None
    name = names[0]
    if not name or "\\" in name or not name.isprintable() or name.strip() != name:
        return None
    return name


def is_open_method(method: str) -> bool:
    return method.startswith(OPEN_METHOD_PREFIXES)


class PeerAuthorizer(grpc.aio.ServerInterceptor):
    """Server interceptor admitting a call only if ``policy(method, peer_id)``.

    The check needs the servicer context (for the auth context), which an
    aio interceptor does not get; so the interceptor wraps the method handler
    returned by the continuation and checks at the start of the call.
    """

    def __init__(self, policy: Policy, *, anonymous: bool = False) -> None:
        self._policy = policy
        # Insecure test servers have no client certificates: the policy is
        # then asked about peer "" instead of the call being refused outright.
        self._anonymous = anonymous

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open_method(method):
            return handler
        return _wrap_handler(handler, method, self._check)

    async def _check(self, method: str, context: grpc.aio.ServicerContext) -> None:
        peer = peer_identity(context)
        if peer is None and self._anonymous:
            peer = ""
        if peer is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "client certificate required (with exactly one printable subject CN)",
            )
            return
        if not self._policy(method, peer):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{peer} may not call {method}")


Check = Callable[[str, grpc.aio.ServicerContext], Awaitable[None]]


def _wrap_behavior(behavior: Callable[..., Any], method: str, check: Check) -> Callable[..., Any]:
    # Streaming handlers are either async generators or coroutines that use
    # context.write(); keep the same shape so grpc drives them as before.
    if inspect.isasyncgenfunction(behavior):

        async def gen_wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
            await check(method, context)
            async for item in behavior(request, context):
                yield item

        return gen_wrapper

    async def coro_wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await check(method, context)
        result = behavior(request, context)
        if inspect.isawaitable(result):
            result = await result
        return result

    return coro_wrapper


def _wrap_handler(
    handler: grpc.RpcMethodHandler, method: str, check: Check
) -> grpc.RpcMethodHandler:
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_behavior(handler.unary_unary, method, check), **kwargs
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_behavior(handler.unary_stream, method, check), **kwargs
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_behavior(handler.stream_unary, method, check), **kwargs
        )
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_behavior(handler.stream_stream, method, check), **kwargs
        )
    return handler
