"""TLS on every listener (sslscan), certificates per domain by SNI, and reload on SIGHUP."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import time

from cryptography import x509

from daisymail.tls import make_self_signed
from tests.conftest import Daisy, require_tool
from tests.reliability.conftest import report, wait_for

STARTTLS = {"smtp": "--starttls-smtp", "submission": "--starttls-smtp", "pop3": "--starttls-pop3"}
STRONG = re.compile(r"GCM|CHACHA20")


def test_sslscan_only_tls12_and_13_with_strong_ciphers(daisy: Daisy) -> None:
    sslscan = require_tool("sslscan")
    scans = {}
    for service in ("smtp", "submission", "pop3", "submissions", "pop3s"):
        args = [sslscan, "--no-colour", "--no-heartbleed", "--no-groups"]
        if service in STARTTLS:
            args.append(STARTTLS[service])
        scans[service] = subprocess.Popen(
            [*args, f"127.0.0.1:{daisy.ports[service]}"], stdout=subprocess.PIPE, text=True
        )
    for service, proc in scans.items():
        out, _ = proc.communicate(timeout=120)
        protocols = dict(re.findall(r"^(SSLv\d|TLSv1\.\d)\s+(enabled|disabled)$", out, re.M))
        ciphers = re.findall(r"^(?:Preferred|Accepted)\s+(\S+)\s+(\d+) bits\s+(\S+)", out, re.M)
        enabled = sorted(p for p, state in protocols.items() if state == "enabled")
        weak = [c for c in ciphers if not STRONG.search(c[2]) or int(c[1]) < 128]
        report(
            "tls.sslscan",
            service=service,
            protocols=enabled,
            ciphers=sorted({c[2] for c in ciphers}),
            weak=len(weak),
        )
        assert len(protocols) == 6, out
        if service == "smtp":
            # The MX port is opportunistic (RFC 7435): any version beats plaintext, but
            # the server's preference is still a strong cipher on TLS 1.2 and 1.3.
            assert enabled == ["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"], out
            preferred = re.findall(r"^Preferred\s+(TLSv1\.[23])\s+\d+ bits\s+(\S+)", out, re.M)
            assert len(preferred) == 2 and all(STRONG.search(c) for _v, c in preferred), out
            continue
        assert enabled == ["TLSv1.2", "TLSv1.3"], out
        assert ciphers and not weak, out


def _tls(port: int, server_name: str | None, starttls: bool = False) -> ssl.SSLSocket:
    """A TLS connection to the server (after EHLO + STARTTLS when asked), greeting read."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = raw.makefile("rb")
    if starttls:
        f.readline()
        raw.sendall(b"EHLO x\r\nSTARTTLS\r\n")
        while not f.readline().startswith(b"220 "):
            pass
    tls = ctx.wrap_socket(raw, server_hostname=server_name)
    if not starttls:
        tls.recv(1000)
    return tls


def _subject(port: int, server_name: str | None, starttls: bool = False) -> str:
    with _tls(port, server_name, starttls) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return str(x509.load_der_x509_certificate(der).subject.rfc4514_string())


def test_sni_picks_the_domain_certificate_and_reloads_on_sighup(daisy_dir: Daisy) -> None:
    sni = daisy_dir.root / "tls/other.test"
    make_self_signed(sni / "cert.pem", sni / "key.pem", "other.test")
    with open(daisy_dir.config, "a") as f:
        f.write('\n[tls.sni]\n"other.test" = "tls/other.test"\n')
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.start()
    assert daisy_dir.proc is not None
    port = daisy_dir.ports["submissions"]
    assert _subject(port, "other.test") == "CN=other.test"
    assert _subject(port, "OTHER.test.") == "CN=other.test"
    assert _subject(port, "mail.daisy.test") == "CN=mail.daisy.test"
    assert _subject(port, None) == "CN=mail.daisy.test"
    assert _subject(daisy_dir.ports["smtp"], "other.test", starttls=True) == "CN=other.test"

    before = _tls(daisy_dir.ports["smtp"], "other.test", starttls=True)

    make_self_signed(sni / "cert.pem", sni / "key.pem", "renewed.other.test")
    daisy_dir.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in daisy_dir.logs(), what="reload")
    t0 = time.monotonic()
    assert _subject(port, "other.test") == "CN=renewed.other.test"
    assert _subject(port, None) == "CN=mail.daisy.test"
    # The TLS session opened before the reload is still served.
    before.sendall(b"NOOP\r\n")
    assert before.recv(1000).startswith(b"250")
    before.close()
    report(
        "tls.sni", sni_names=1, reload_without_drop=True, check_s=round(time.monotonic() - t0, 2)
    )
