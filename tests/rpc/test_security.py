"""mTLS and per-peer authorisation against real grpc.aio servers."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mecfed.config import TlsPaths
from mecfed.rpc.security import (
    PeerAuthorizer,
    channel_credentials,
    secure_channel,
    server_credentials,
)
from mecfed.testbed.pki import Pki

UNARY = "/test.Echo/Unary"
STREAM = "/test.Echo/Stream"
_ident = (lambda b: b, lambda b: b)  # raw bytes in and out


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"echo:" + request


async def _stream(request: bytes, context: grpc.aio.ServicerContext):
    for i in range(3):
        yield request + str(i).encode()


def _echo_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary, *_ident),
            "Stream": grpc.unary_stream_rpc_method_handler(_stream, *_ident),
        },
    )


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, TlsPaths]:
    ours = Pki(tmp_path / "pki")
    foreign = Pki(tmp_path / "foreign", ca_name="foreign CA")
    return {
        "mec-01": ours.issue("mec-01"),
        "mec-02": ours.issue("mec-02"),
        "mec-03": ours.issue("mec-03"),
        # Same name as an allowed system, but signed by an unknown CA.
        "foreign": foreign.issue("mec-02"),
        # The foreign certificate with our CA as trust root, so that it is
        # the server (not the client) that has to reject the handshake.
        "foreign-client": TlsPaths(
            ca=ours.paths("mec-01").ca,
            cert=foreign.paths("mec-02").cert,
            key=foreign.paths("mec-02").key,
        ),
    }


def _policy(method: str, peer: str) -> bool:
    return peer == "mec-02"


async def _start(creds: grpc.ServerCredentials) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=[PeerAuthorizer(_policy)])
    server.add_generic_rpc_handlers([_echo_handler()])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def server(pki):
    srv, target = await _start(server_credentials(pki["mec-01"]))
    yield target
    await srv.stop(None)


async def _call(channel: grpc.aio.Channel, method: str = UNARY) -> bytes:
    if method == STREAM:
        call = channel.unary_stream(STREAM, *_ident)(b"x", timeout=5)
        return b"".join([item async for item in call])
    return await channel.unary_unary(method, *_ident)(b"x", timeout=5)


async def _code(channel: grpc.aio.Channel, method: str = UNARY) -> grpc.StatusCode:
    try:
        await _call(channel, method)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _no_cert_channel(target: str, tls: TlsPaths) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(Path(tls.ca).read_bytes())
    return grpc.aio.secure_channel(
        target, creds, options=[("grpc.ssl_target_name_override", "mec-01")]
    )


async def test_allowed_peer_ok(server, pki):
    async with secure_channel(server, pki["mec-02"], "mec-01") as ch:
        assert await _call(ch) == b"echo:x"
        assert await _call(ch, STREAM) == b"x0x1x2"


@pytest.mark.parametrize("method", [UNARY, STREAM])
async def test_valid_cert_not_allowed_is_permission_denied(server, pki, method):
    async with secure_channel(server, pki["mec-03"], "mec-01") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call(ch, method)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == f"mec-03 may not call {method}"


async def test_health_stays_open_for_any_authenticated_peer(server, pki):
    async with secure_channel(server, pki["mec-03"], "mec-01") as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_no_client_cert_fails_in_handshake(server, pki):
    # grpcio cannot request an optional client certificate, so a required one
    # is enforced by the TLS handshake: the client sees UNAVAILABLE.
    async with _no_cert_channel(server, pki["mec-01"]) as ch:
        assert await _code(ch) == grpc.StatusCode.UNAVAILABLE


async def test_foreign_ca_client_cert_fails(server, pki):
    async with secure_channel(server, pki["foreign-client"], "mec-01") as ch:
        assert await _code(ch) != grpc.StatusCode.OK


async def test_wrong_expected_peer_fails(server, pki):
    async with secure_channel(server, pki["mec-02"], "mec-03") as ch:
        assert await _code(ch) != grpc.StatusCode.OK


async def test_foreign_server_rejected_by_client(pki):
    # A server with a certificate from another CA is not trusted even if it
    # claims the expected id.
    srv, target = await _start(server_credentials(pki["foreign"]))
    try:
        async with secure_channel(target, pki["mec-01"], "mec-02") as ch:
            assert await _code(ch) != grpc.StatusCode.OK
    finally:
        await srv.stop(None)


def _optional_client_auth_credentials(tls: TlsPaths) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(Path(tls.key).read_bytes(), Path(tls.cert).read_bytes())],
        root_certificates=Path(tls.ca).read_bytes(),
        require_client_auth=False,
    )


async def test_interceptor_rejects_anonymous_caller_as_unauthenticated(pki):
    # Defence in depth: on a server that does not request client certificates
    # the authorizer still refuses every non-health call.
    tls = pki["mec-01"]
    creds = _optional_client_auth_credentials(tls)
    srv, target = await _start(creds)
    try:
        async with _no_cert_channel(target, tls) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _call(ch)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert err.value.details().startswith("client certificate required")
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        # Without requesting, grpc does not even see a presented certificate.
        opts = [("grpc.ssl_target_name_override", "mec-01")]
        async with grpc.aio.secure_channel(
            target, channel_credentials(pki["mec-02"]), options=opts
        ) as ch:
            assert await _code(ch) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await srv.stop(None)


def _forged(
    pki_dir: Path, out: Path, names: list[str], dns: list[str], others: list | None = None
) -> TlsPaths:
    """A certificate of our CA with an odd subject: several CNs, or a CN with
    a NUL byte (as a hostile operator's CSR might ask for); ``others`` are
    further SAN entries (x509.GeneralName)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = Pki(pki_dir)
    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.ca_key_path.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in names]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    )
    general_names = [x509.DNSName(d) for d in dns] + list(others or [])
    if general_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    (out / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "c.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsPaths(ca=str(ca.ca_cert_path), cert=str(out / "c.pem"), key=str(out / "c.key"))


def _uri(value: str):
    from cryptography import x509

    return x509.UniformResourceIdentifier(value)


def _ip(value: str):
    import ipaddress

    from cryptography import x509

    return x509.IPAddress(ipaddress.ip_address(value))


FORGED = [
    (["mec-02", "mec-03"], ["mec-02"], [], "2 CNs"),  # two CNs: admitted as neither
    (["mec-02", "mec-02"], ["mec-02"], [], "2 CNs"),  # even the same name twice
    ([], ["mec-02"], [], "0 CNs"),
    (["mec-02\x00mec-03"], ["mec-02"], [], "not a system id"),  # a NUL byte inside the CN
    (["mec-02 "], ["mec-02"], [], "not a system id"),  # trailing blank
    (["mec-02\n"], ["mec-02"], [], "not a system id"),  # control character
    (["mec/02"], [], [], "not a system id"),
    (["mec-0\u0662"], [], [], "not a system id"),  # a non-ASCII digit
    (["-mec-02"], [], [], "not a system id"),
    (["mec-02"], ["mec-03"], [], "does not agree with CN 'mec-02'"),  # SAN names another
    (["mec-02"], ["mec-02", "mec-03"], [], "does not agree"),
    (["mec-02"], ["mec-02"], [_uri("spiffe://x/mec-03")], "UniformResourceIdentifier"),
]


@pytest.mark.parametrize(
    ("names", "dns", "others", "why"),
    FORGED,
    ids=[
        "two-cns",
        "same-cn-twice",
        "no-cn",
        "nul-byte",
        "trailing-blank",
        "newline",
        "slash",
        "non-ascii-digit",
        "leading-dash",
        "san-disagrees",
        "second-san",
        "uri-san",
    ],
)
async def test_ambiguous_certificate_names_are_not_an_identity(
    server, pki, tmp_path, names, dns, others, why
):
    forged = _forged(tmp_path / "pki", tmp_path / "forged", names, dns, others)
    async with secure_channel(server, forged, "mec-01") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call(ch)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value.details()
    assert err.value.details().startswith("client certificate refused: ")
    assert why in err.value.details()


async def test_a_well_formed_forged_certificate_is_its_one_name(server, pki, tmp_path):
    # The rule admits what the testbed CA issues: one CN, DNS SAN = CN, IPs.
    good = _forged(tmp_path / "pki", tmp_path / "good", ["mec-02"], ["mec-02"], [_ip("127.0.0.1")])
    async with secure_channel(server, good, "mec-01") as ch:
        assert await _call(ch) == b"echo:x"
    no_san = _forged(tmp_path / "pki", tmp_path / "nosan", ["mec-02"], [])
    async with secure_channel(server, no_san, "mec-01") as ch:
        assert await _call(ch) == b"echo:x"
