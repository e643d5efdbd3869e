"""TLS: a self-signed certificate on first start, server contexts, SNI, reload.

Only TLS 1.2 and 1.3 are offered, with the platform's strong default ciphers. The
context object is kept and its certificates swapped on reload, so listeners never
need rebinding and sessions in flight keep their connection.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class TLSError(Exception):
    """Certificates are missing or unusable; str(e) says which file and why."""


def make_self_signed(cert_path: Path, key_path: Path, hostname: str, days: int = 825) -> None:
    """Write a self-signed ECDSA P-256 certificate for hostname (and localhost)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        alt.append(x509.DNSName("localhost"))
    alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def certificate_expiry(cert_path: Path) -> datetime.datetime:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc


def _new_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS")
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as e:
        raise TLSError(f"cannot load certificate {cert} / key {key}: {e}") from None
    return ctx


class ServerTLS:
    """The server's SSL context plus per-domain contexts chosen by SNI."""

    def __init__(self, cert: Path, key: Path, sni: dict[str, tuple[Path, Path]]) -> None:
        self.cert, self.key, self.sni = cert, key, sni
        self.context = _new_context(cert, key)
        self._by_name: dict[str, ssl.SSLContext] = {}
        self._load_sni()
        self.context.sni_callback = self._pick

    def _load_sni(self) -> None:
        self._by_name = {name.lower(): _new_context(c, k) for name, (c, k) in self.sni.items()}

    def _pick(self, sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name:
            chosen = self._by_name.get(name.lower().rstrip("."))
            if chosen is not None:
                sock.context = chosen

    def reload(self) -> None:
        """Re-read certificate files in place; new handshakes use them at once."""
        try:
            self.context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as e:
            raise TLSError(f"cannot reload {self.cert}: {e}") from None
        self._load_sni()
