"""`relay add` takes the CIDR form `relay list` prints, as well as sendmail's prefixes."""

from __future__ import annotations

import pytest

from daisymail.directory.model import RelayRule
from daisymail.routing.relay import (
    class_entry_from_relay_rule,
    relay_rule_from_admin_entry,
    relay_rule_from_class_entry,
)


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("192.168.77.0/24", RelayRule("192.168.77.0/24", "network")),
        ("127.0.0.2/32", RelayRule("127.0.0.2/32", "network")),
        ("10.0.0.0/8", RelayRule("10.0.0.0/8", "network")),
        ("10.1.2.3/8", RelayRule("10.0.0.0/8", "network")),
        ("192.168.0.0/20", RelayRule("192.168.0.0/20", "network")),
        (" 0.0.0.0/0 ", RelayRule("0.0.0.0/0", "network")),
        ("2001:db8::/32", RelayRule("2001:db8::/32", "network")),
        ("2001:DB8::/36", RelayRule("2001:db8::/36", "network")),
        ("IPv6:2001:db8::/48", RelayRule("2001:db8::/48", "network")),
        ("2001:db8::1", RelayRule("2001:db8::1/128", "network")),
        ("::1/128", RelayRule("::1/128", "network")),
        # sendmail's forms are still read the sendmail way
        ("192.168.5", RelayRule("192.168.5.0/24", "network")),
        ("127.0.0.2", RelayRule("127.0.0.2/32", "network")),
        ("IPv6:2001:db8::", RelayRule("2001:db8::/32", "network")),
        ("IPv6:2001:db8::1", RelayRule("2001:db8::1/128", "network")),
        ("friend.example", RelayRule("friend.example", "domain")),
        ("Friend.Example.", RelayRule("friend.example", "domain")),
    ],
)
def test_admin_entries(entry: str, rule: RelayRule) -> None:
    assert relay_rule_from_admin_entry(entry) == rule


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "300.1.2.3/40",
        "192.168.5.0/33",
        "192.168.5.0/",
        "/24",
        "2001:db8::/129",
        "IPv6:192.168.5.0/24",
        "2001:zz::/32",
        "a b",
        "x@y",
        "friend.example/24",
    ],
)
def test_bad_admin_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        relay_rule_from_admin_entry(entry)


@pytest.mark.parametrize("entry", ["192.168.77.0/24", "2001:db8::/32", "10.0.0.0/8"])
def test_cidr_stays_out_of_the_legacy_file_reader(entry: str) -> None:
    """relay-domains lines are read as sendmail read them: a CIDR there never matched."""
    with pytest.raises(ValueError):
        relay_rule_from_class_entry(entry)


@pytest.mark.parametrize("pattern", ["192.168.77.0/24", "127.0.0.2/32", "2001:db8::/32"])
def test_list_output_reads_back(pattern: str) -> None:
    """What `relay list` prints in both columns is accepted by `relay add`."""
    rule = RelayRule(pattern, "network")
    assert relay_rule_from_admin_entry(rule.pattern) == rule
    assert relay_rule_from_admin_entry(class_entry_from_relay_rule(rule)) == rule
