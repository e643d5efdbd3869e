"""`relay add` with CIDR networks, through the CLI and then on a real SMTP socket."""

from __future__ import annotations

import json
import smtplib

from tests.conftest import Daisy


def test_cli_accepts_what_relay_list_prints(daisy_dir: Daisy) -> None:
    for entry in ("192.168.77.0/24", "127.0.0.2/32", "2001:db8::/32", "10.1.2.3/8"):
        daisy_dir.cli("relay", "add", entry)
    rules = json.loads(daisy_dir.cli("relay", "list", "--json").stdout)
    assert sorted(r["pattern"] for r in rules) == [
        "10.0.0.0/8",
        "127.0.0.2/32",
        "192.168.77.0/24",
        "2001:db8::/32",
    ]
    # Adding the same network in sendmail's spelling is the same rule.
    again = daisy_dir.cli("relay", "add", "192.168.77", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    daisy_dir.cli("relay", "remove", "2001:db8::/32")
    bad = daisy_dir.cli("relay", "add", "192.168.77.0/33", check=False)
    assert bad.returncode != 0 and "not an IP network" in bad.stderr


def _rcpt_code(daisy: Daisy, source: str) -> int:
    with smtplib.SMTP(
        "127.0.0.1", daisy.ports["smtp"], timeout=20, source_address=(source, 0)
    ) as s:
        s.ehlo("client.example")
        assert s.mail("someone@sender.test")[0] == 250
        return s.docmd("RCPT TO:<victim@remote.test>")[0]


def test_a_network_added_by_cidr_relays_and_its_neighbour_does_not(daisy_dir: Daisy) -> None:
    daisy_dir.set_config("[relay]", "networks", '["::1/128"]')
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.cli("relay", "add", "127.0.0.2/32")
    daisy_dir.start()
    assert _rcpt_code(daisy_dir, "127.0.0.2") == 250
    assert _rcpt_code(daisy_dir, "127.0.0.3") in (550, 554)
    assert _rcpt_code(daisy_dir, "127.0.0.1") in (550, 554)
