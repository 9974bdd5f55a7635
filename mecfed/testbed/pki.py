"""The testbed's certificate authority: one CA and one identity per MEC system.

Each MEC system gets a single EC P-256 key and a certificate with
CN = SAN DNS = system id (plus IP SANs for its underlay address and
127.0.0.1), used by both its MEF and its MEO as server and client
certificate. Files are reused when present so bring-up is idempotent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mecfed.config import TlsPaths

_VALIDITY = dt.timedelta(days=3650)
# Backdated so a slightly skewed clock in a namespace never sees "not yet valid".
_BACKDATE = dt.timedelta(hours=1)


def identity_paths(directory: Path, system_id: str) -> TlsPaths:
    """Where the CA in ``directory`` keeps the identity of ``system_id``."""
    return TlsPaths(
        ca=str(directory / "ca.pem"),
        cert=str(directory / f"{system_id}.pem"),
        key=str(directory / f"{system_id}.key"),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Writes a key readable only by its owner (created 0600, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Pki:
    """A CA in ``directory`` (``ca.pem``/``ca.key``) issuing system identities
    into ``directory/<system_id>.{pem,key}``."""

    def __init__(self, directory: Path, ca_name: str = "mecfed testbed CA") -> None:
        self.directory = Path(directory)
        self.ca_name = ca_name

    @property
    def ca_cert_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.directory / "ca.key"

    def ensure_ca(self) -> None:
        """Creates the CA unless both its files already exist."""
        if self.ca_cert_path.exists() and self.ca_key_path.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.ca_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.ca_key_path, _key_pem(key))
        self.ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def paths(self, system_id: str) -> TlsPaths:
        return identity_paths(self.directory, system_id)

    def issue(self, system_id: str, ips: Iterable[str] = ()) -> TlsPaths:
        """Returns the identity of ``system_id``, issuing it if missing.

        An existing certificate is reused only if it was issued by the current
        CA and lists every requested IP; otherwise it is replaced.
        """
        self.ensure_ca()
        tls = self.paths(system_id)
        wanted_ips = {ipaddress.ip_address(ip) for ip in ["127.0.0.1", *ips]}
        if self._usable(Path(tls.cert), Path(tls.key), wanted_ips):
            return tls
        ca_cert, ca_key = self._load_ca()
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        san = x509.SubjectAlternativeName(
            [x509.DNSName(system_id), *(x509.IPAddress(ip) for ip in sorted(wanted_ips))]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, system_id)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(san, critical=False)
            # Both roles: MEF and MEO serve with it and dial peers with it.
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(Path(tls.key), _key_pem(key))
        Path(tls.cert).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return tls

    def _usable(
        self,
        cert_path: Path,
        key_path: Path,
        wanted_ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address],
    ) -> bool:
        if not (cert_path.exists() and key_path.exists()):
            return False
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            ca_cert, _ = self._load_ca()
            cert.verify_directly_issued_by(ca_cert)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = set(san.get_values_for_type(x509.IPAddress))
        except Exception:  # unreadable, foreign or malformed: issue a new one
            return False
        return wanted_ips <= have
