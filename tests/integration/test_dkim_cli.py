"""`daisymail dkim keygen/list/rotate` through the real CLI; the printed records work."""

from __future__ import annotations

import json
import stat

import dkim as dkimpy

from daisymail.mailauth.dkim import signatures
from daisymail.mailauth.keystore import KeyStore
from tests.conftest import Daisy, free_port
from tests.dns_server import serve
from tests.unit.test_dkim import MESSAGE, dkimpy_dns


def test_keygen_list_rotate(daisy_dir: Daisy) -> None:
    out = daisy_dir.cli("dkim", "keygen", "Example.ORG").stdout
    records = [line for line in out.splitlines() if not line.startswith(";")]
    assert len(records) == 2
    assert all("._domainkey.example.org. 3600 IN TXT" in r for r in records)
    assert any("k=rsa" in r for r in records) and any("k=ed25519" in r for r in records)
    rsa = next(r for r in records if "k=rsa" in r)
    assert '" "' in rsa  # an RSA-2048 key needs more than one 255-byte string

    keydir = daisy_dir.root / "dkim" / "example.org"
    pems = sorted(keydir.glob("*.pem"))
    assert len(pems) == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pems)

    # The printed records, served as a zone, verify what the stored keys sign.
    srv = serve(free_port(), [("example.org", "$TTL 300\n@ IN SOA ns h 1 1 1 1 1\n" + out)])
    try:
        keys = KeyStore(daisy_dir.root / "dkim").signing_keys("example.org")
        msg = signatures(MESSAGE, keys) + MESSAGE
        d = dkimpy.DKIM(msg)
        assert d.verify(idx=0, dnsfunc=dkimpy_dns(srv))
        assert d.verify(idx=1, dnsfunc=dkimpy_dns(srv))
    finally:
        srv.stop()

    listed = json.loads(daisy_dir.cli("dkim", "list", "--json").stdout)
    assert {(k["algorithm"], k["state"]) for k in listed} == {
        ("rsa", "active"),
        ("ed25519", "active"),
    }
    old = {k["selector"] for k in listed}

    rot = daisy_dir.cli("dkim", "rotate", "example.org").stdout
    assert "sign from" in rot and rot.count("IN TXT") == 2
    listed = json.loads(daisy_dir.cli("dkim", "list", "--json").stdout)
    states = {k["selector"]: k["state"] for k in listed}
    assert {states[s] for s in old} == {"active"}
    assert sorted(v for s, v in states.items() if s not in old) == ["pending", "pending"]

    daisy_dir.cli("dkim", "rotate", "example.org", "--delay", "0")
    listed = json.loads(daisy_dir.cli("dkim", "list", "--json").stdout)
    assert sorted(k["state"] for k in listed) == [
        *["active"] * 2,
        *["pending"] * 2,
        *["retired"] * 2,
    ]
    table = daisy_dir.cli("dkim", "list").stdout
    assert "retired" in table and "SIGNS FROM" in table


def test_keygen_one_algorithm_and_errors(daisy_dir: Daisy) -> None:
    out = daisy_dir.cli("dkim", "keygen", "example.net", "-s", "mail", "-a", "ed25519").stdout
    assert "mail._domainkey.example.net. 3600 IN TXT" in out and "k=ed25519" in out
    again = daisy_dir.cli(
        "dkim", "keygen", "example.net", "-s", "mail", "-a", "ed25519", check=False
    )
    assert again.returncode == 1 and "exists already" in again.stderr
    bad = daisy_dir.cli("dkim", "keygen", "../etc", check=False)
    assert bad.returncode == 1 and "not a domain" in bad.stderr and "Traceback" not in bad.stderr
    none = daisy_dir.cli("dkim", "rotate", "example.com", check=False)
    assert none.returncode == 1 and "no DKIM key" in none.stderr
    assert daisy_dir.cli("dkim", "list", "nothing.test").stdout.strip() == "(none)"
