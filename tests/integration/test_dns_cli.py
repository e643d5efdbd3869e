"""`daisymail dns records` output served as a zone, then `dns check` against it."""

from __future__ import annotations

from tests.conftest import Daisy, free_port
from tests.dns_server import serve

SOA = "$TTL 300\n@ IN SOA ns h 1 1 1 1 1\n"


def test_records_then_check(daisy_dir: Daisy) -> None:
    daisy_dir.cli("dkim", "keygen", "example.org")
    zone = daisy_dir.cli("dns", "records", "example.org").stdout
    assert "example.org. 3600 IN MX 10 mail.daisy.test." in zone
    assert 'example.org. 3600 IN TXT "v=spf1 mx -all"' in zone
    assert zone.count("._domainkey.example.org. 3600 IN TXT") == 2
    assert '_dmarc.example.org. 3600 IN TXT "v=DMARC1; p=quarantine;' in zone
    assert '_smtp._tls.example.org. 3600 IN TXT "v=TLSRPTv1;' in zone
    port = daisy_dir.ports["submission"]
    assert f"_submission._tcp.example.org. 3600 IN SRV 0 1 {port} mail.daisy.test." in zone

    srv = serve(
        free_port(),
        [
            ("example.org", SOA + zone),
            ("daisy.test", SOA + "mail IN A 127.0.0.2\n"),
            ("127.in-addr.arpa", SOA + "2.0.0 IN PTR mail.daisy.test.\n3.0.0 IN PTR other.test.\n"),
        ],
    )
    try:
        daisy_dir.set_config("[dns]", "nameservers", f'["{srv.address}"]')
        out = daisy_dir.cli("dns", "check", "example.org", "--ip", "127.0.0.2").stdout
        assert "PROBLEM" not in out
        assert "ok      SPF for 127.0.0.2: pass" in out
        assert "ok      mail.daisy.test resolves back to 127.0.0.2: True" in out

        bad = daisy_dir.cli("dns", "check", "example.org", "--ip", "127.0.0.3", check=False)
        assert bad.returncode == 1
        assert "PROBLEM SPF for 127.0.0.3: fail" in bad.stdout
        assert "PROBLEM PTR of 127.0.0.3: other.test (HELO is mail.daisy.test)" in bad.stdout

        srv.add_zone("example.org", SOA + zone.replace("_dmarc", "_notdmarc"))
        gone = daisy_dir.cli("dns", "check", "example.org", check=False)
        assert gone.returncode == 1
        assert "PROBLEM TXT _dmarc.example.org: missing" in gone.stdout
        assert "1 problem(s) in the DNS of example.org" in gone.stderr
    finally:
        srv.stop()
    wrong = daisy_dir.cli("dns", "check", "example.org", "--ip", "nope", check=False)
    assert wrong.returncode == 1 and "not an IP address" in wrong.stderr


def test_records_name_mta_sts_autoconfig_and_imap_when_served(daisy_dir: Daisy) -> None:
    daisy_dir.set_config("[http]", "listen", '["127.0.0.1:2080"]')
    daisy_dir.set_config("[http.mta_sts]", "mode", '"enforce"')
    zone = daisy_dir.cli("dns", "records", "example.org").stdout
    sts = next(line for line in zone.splitlines() if line.startswith("_mta-sts.example.org."))
    assert '3600 IN TXT "v=STSv1; id=' in sts
    assert "mta-sts.example.org. 3600 IN CNAME mail.daisy.test." in zone
    assert "autoconfig.example.org. 3600 IN CNAME mail.daisy.test." in zone
    port = daisy_dir.ports["imaps"]
    assert f"_imaps._tcp.example.org. 3600 IN SRV 0 1 {port} mail.daisy.test." in zone

    srv = serve(
        free_port(),
        [("example.org", SOA + zone), ("daisy.test", SOA + "mail IN A 127.0.0.2\n")],
    )
    try:
        daisy_dir.set_config("[dns]", "nameservers", f'["{srv.address}"]')
        out = daisy_dir.cli("dns", "check", "example.org", check=False).stdout
        assert "PROBLEM" not in out, out
        assert "ok      CNAME mta-sts.example.org: 127.0.0.2" in out
        # A policy change gives a new id: the published one is now stale.
        daisy_dir.set_config("[http.mta_sts]", "mode", '"testing"')
        stale = daisy_dir.cli("dns", "check", "example.org", check=False)
        assert stale.returncode == 1 and "PROBLEM TXT _mta-sts.example.org" in stale.stdout
    finally:
        srv.stop()
