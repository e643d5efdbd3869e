"""TLS: a self-signed certificate on first start, server contexts, SNI, reload.

Submission and POP3S offer only TLS 1.2 and 1.3 with strong ciphers: clients there
send passwords. The MX port (25) offers every version and cipher the library allows
(RFC 7435 opportunistic security): a sending MTA whose TLS is old would otherwise fall
back to plaintext, which is worse. The context objects are kept and their certificates
swapped on reload, so listeners never need rebinding and sessions keep their connection.
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


STRONG_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS"
ANY_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:ALL:@SECLEVEL=0"
"""Strong ones first (the server's preference decides), then whatever else OpenSSL has."""


def _new_context(cert: Path, key: Path, opportunistic: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if opportunistic:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.set_ciphers(ANY_CIPHERS)
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(STRONG_CIPHERS)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as e:
        raise TLSError(f"cannot load certificate {cert} / key {key}: {e}") from None
    return ctx


class ServerTLS:
    """The server's SSL contexts plus per-domain contexts chosen by SNI.

    `context` (TLS 1.2+) is for submission and POP3; `mx_context` (any version) for port 25.
    """

    def __init__(self, cert: Path, key: Path, sni: dict[str, tuple[Path, Path]]) -> None:
        self.cert, self.key, self.sni = cert, key, sni
        self.context = _new_context(cert, key)
        self.mx_context = _new_context(cert, key, opportunistic=True)
        self._by_name: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._load_sni()
        self.context.sni_callback = self._pick
        self.mx_context.sni_callback = self._pick

    def _load_sni(self) -> None:
        self._by_name = {
            (name.lower(), opp): _new_context(c, k, opp)
            for name, (c, k) in self.sni.items()
            for opp in (False, True)
        }

    def _pick(self, sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        if name:
            chosen = self._by_name.get((name.lower().rstrip("."), ctx is self.mx_context))
            if chosen is not None:
                sock.context = chosen

    def reload(self) -> None:
        """Re-read certificate files in place; new handshakes use them at once."""
        try:
            for ctx in (self.context, self.mx_context):
                ctx.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as e:
            raise TLSError(f"cannot reload {self.cert}: {e}") from None
        self._load_sni()
