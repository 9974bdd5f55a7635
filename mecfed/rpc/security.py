"""Mutual TLS between MEC systems: one certificate per MEC system.

Every MEC system holds one key and one certificate signed by the federation
CA (in the testbed: :mod:`mecfed.testbed.pki`), with subject CN = system id,
SAN DNS = system id and IP SANs for its underlay address and 127.0.0.1. Its
MEF and its MEO present that certificate both as server and as client, so a
server learns *which MEC system* calls it from the TLS handshake alone and
:class:`PeerAuthorizer` decides per method whether that system may call it.

The identity rule (:func:`certificate_identity`): a client certificate must
carry exactly one subject CN, made of the characters of a system id, and
every DNS name of its subjectAltName must equal that CN (IP SANs allowed,
nothing else); otherwise the call is refused with ``UNAUTHENTICATED`` and a
message saying which part of the rule the certificate breaks.

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
from cryptography import x509
from cryptography.x509.oid import NameOID

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
    opts = [
        ("grpc.ssl_target_name_override", expected_peer_id),
        # A server that restarts (a peer MEF, our own MEO) is reached again
        # within a second or two: gRPC's default reconnect backoff grows to
        # two minutes, and every call fails fast meanwhile.
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 2000),
        *options,
    ]
    return grpc.aio.secure_channel(
        target, channel_credentials(tls), options=opts, interceptors=list(interceptors) or None
    )


def peer_identity(context: grpc.aio.ServicerContext | grpc.ServicerContext) -> str | None:
    """The calling MEC system's id from its verified client certificate, or
    None if it sent none or the certificate breaks the identity rule (see
    :func:`certificate_identity`)."""
    return certificate_identity(context)[0]


def certificate_identity(
    context: grpc.aio.ServicerContext | grpc.ServicerContext,
) -> tuple[str | None, str]:
    """``(system id, "")``, or ``(None, why not)``.

    The identity rule: a client certificate names exactly one MEC system.

    * its subject carries exactly **one** CN (attribute type 2.5.4.3, in any
      RDN, multi-valued RDNs included);
    * the CN is a system id: 1..64 characters of ``A-Z a-z 0-9 - _ . :``,
      starting with a letter or digit (so no NUL, control, blank, escape or
      non-ASCII character can make two systems look alike);
    * every DNS name in its subjectAltName equals the CN, and the SAN holds
      nothing but DNS names and IP addresses (the underlay addresses the
      system serves on); a certificate without SAN is judged by its CN.

    The certificate itself (``x509_pem_cert``, the leaf gRPC verified) is
    parsed, not gRPC's summaries: ``x509_common_name`` shows one CN only and
    stops at a NUL byte, so a certificate with two CNs, or with
    ``"mec-02\\x00mec-03"``, would be taken for the first system it names.
    """
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert")
    if not pems:
        return None, "client certificate required"
    if len(pems) != 1:
        return None, f"client certificate refused: {len(pems)} leaf certificates"
    return _identity_of_pem(bytes(pems[0]))


# The same rule as every id in the model (mecfed.model.checks.require_id).
_SYSTEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


@functools.lru_cache(maxsize=1024)
def _identity_of_pem(pem: bytes) -> tuple[str | None, str]:
    refused = "client certificate refused: "
    try:
        cert = x509.load_pem_x509_certificate(pem)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as exc:
        return None, f"{refused}unreadable certificate ({exc})"
    if len(names) != 1:
        return None, f"{refused}its subject has {len(names)} CNs; exactly one is required"
    cn = names[0].value
    if not isinstance(cn, str) or not _SYSTEM_ID.fullmatch(cn):
        return None, (
            f"{refused}CN {_shown(cn)} is not a system id (1..64 characters: letters, "
            "digits, '-', '_', '.', ':'; starting with a letter or digit)"
        )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return cn, ""
    except ValueError as exc:
        return None, f"{refused}unreadable subjectAltName ({exc})"
    for general_name in san:
        if isinstance(general_name, x509.IPAddress):
            continue
        if isinstance(general_name, x509.DNSName) and general_name.value == cn:
            continue
        return None, (
            f"{refused}subjectAltName {type(general_name).__name__} "
            f"{_shown(general_name.value)} does not agree with CN {cn!r}"
        )
    return cn, ""


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
        peer, why_not = certificate_identity(context)
        if peer is None and self._anonymous:
            peer = ""
        if peer is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, why_not)
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
