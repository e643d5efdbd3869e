"""ARC sets made by mailauth.arc_seal, checked by dkimpy and by Daisy's validator:
a first seal (cv=none), a second forwarder's seal over a passing chain (cv=pass), and
a seal over a broken chain (cv=fail)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import dkim as dkimpy
import pytest

from daisymail.dns import DnspythonResolver
from daisymail.mailauth.arc import ARCResult, validate
from daisymail.mailauth.arc_seal import arc_set
from daisymail.mailauth.dkim import Signer
from daisymail.mailauth.dkim_verify import BodyHashes
from daisymail.mailauth.keystore import KeyStore
from tests.conftest import free_port
from tests.dns_server import DNSServer, serve
from tests.unit.test_dkim import dkimpy_dns

MESSAGE = (
    b"From: Alice <alice@sender.test>\r\nTo: bob@example.test\r\nSubject: chain\r\n"
    b"Message-ID: <c1@sender.test>\r\n\r\nBody line.\r\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    ks = KeyStore(Path(tmp_path_factory.mktemp("arc")) / "keys")
    ks.generate("one.test", "s1", "rsa")
    ks.generate("two.test", "s2", "rsa")
    return ks


@pytest.fixture(scope="module")
def server(keys: KeyStore) -> Iterator[DNSServer]:
    zones = [
        (d, {f"{k.selector}._domainkey": [("TXT", k.record)] for k in keys.keys(d)})
        for d in ("one.test", "two.test")
    ]
    srv = serve(free_port(), zones)
    yield srv
    srv.stop()


def seal(keys: KeyStore, message: bytes, domain: str, authserv_id: str) -> bytes:
    signer = Signer()
    signer.feed(message)
    signer.finish([])
    key = keys.signing_keys(domain, time.time())[0]
    return arc_set(signer.fields, signer.body_hash, key, authserv_id, signer.now) + message


def ours(server: DNSServer, message: bytes) -> ARCResult:
    parsed = BodyHashes()
    parsed.feed(message)
    resolver = DnspythonResolver([server.address], timeout=2.0)
    return asyncio.run(validate(parsed, resolver))


def test_first_and_second_seal(keys: KeyStore, server: DNSServer) -> None:
    ar = b"Authentication-Results: mx.one.test; spf=pass smtp.mailfrom=sender.test\r\n"
    first = seal(keys, ar + MESSAGE, "one.test", "mx.one.test")
    assert first.startswith(b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=one.test; s=s1;")
    assert b"ARC-Authentication-Results: i=1; mx.one.test;\r\n\tspf=pass" in first
    assert dkimpy.arc_verify(first, dnsfunc=dkimpy_dns(server))[0] == b"pass"
    assert ours(server, first).result == "pass"

    ar2 = b"Authentication-Results: mx.two.test; arc=pass (i=1 d=one.test)\r\n"
    second = seal(keys, ar2 + first, "two.test", "mx.two.test")
    assert second.startswith(b"ARC-Seal: i=2; a=rsa-sha256; cv=pass; d=two.test;")
    assert ours(server, second) == ARCResult("pass", 2, "two.test")
    assert dkimpy.arc_verify(second, dnsfunc=dkimpy_dns(server))[0] == b"pass"


def test_a_broken_chain_is_sealed_as_failed(keys: KeyStore, server: DNSServer) -> None:
    first = seal(keys, MESSAGE, "one.test", "mx.one.test")
    ar2 = b"Authentication-Results: mx.two.test; arc=fail\r\n"
    second = seal(keys, ar2 + first, "two.test", "mx.two.test")
    assert second.startswith(b"ARC-Seal: i=2; a=rsa-sha256; cv=fail;")
    assert ours(server, second).result == "fail"
