"""Relay permission: the §5.5 vectors, trusted clients, and relay-domains entries."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.directory.legacy.maps import parse_access_relays, parse_class_file
from daisymail.directory.model import Domain, RelayRule, Snapshot
from daisymail.routing.relay import (
    class_entry_from_relay_rule,
    relay_allowed,
    relay_rule_from_class_entry,
)

LOOPBACK = ["127.0.0.1/32", "::1/128"]


def _snapshot() -> Snapshot:
    names, _ = parse_class_file(b"acme.com\nfriend.example\n192.168.5\n", "relay-domains")
    access, _ = parse_access_relays(b"Connect:10.1.2 RELAY\nTo:partner.example RELAY\n", "access")
    return Snapshot(
        domains={"acme.com": Domain("acme.com"), "hosted.test": Domain("hosted.test")},
        relay_rules=[*map(relay_rule_from_class_entry, names), *access],
    )


SNAPSHOT = _snapshot()


def allowed(
    domain: str,
    client_ip: str = "203.0.113.9",
    *,
    hosts_only: bool = False,
    authenticated: bool = False,
    client_hostname: str | None = None,
) -> bool:
    return relay_allowed(
        domain,
        client_ip=client_ip,
        authenticated=authenticated,
        snapshot=SNAPSHOT,
        networks=LOOPBACK,
        hosts_only=hosts_only,
        client_hostname=client_hostname,
    ).allowed


@pytest.mark.parametrize(
    ("vector", "domain", "expected"),
    [
        ("R1", "remote.test", False),
        ("R2", "acme.com", True),
        ("R2", "ACME.COM.", True),
        ("R3", "sub.acme.com", True),
        ("R4", "friend.example", True),
        ("R4", "a.b.friend.example", True),
        ("R5", "notfriend.example", False),
        ("R5", "friend.example.evil.test", False),
        ("R6", "partner.example", True),
        ("R6", "sub.partner.example", True),
    ],
)
def test_vectors(vector: str, domain: str, expected: bool) -> None:
    assert allowed(domain) is expected, vector


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("acme.com", True),
        ("friend.example", True),
        ("partner.example", True),
        ("sub.acme.com", False),  # the acme.com relay-domains entry now covers only itself
        ("a.friend.example", False),
        ("sub.partner.example", False),
    ],
)
def test_hosts_only(domain: str, expected: bool) -> None:
    assert allowed(domain, hosts_only=True) is expected


@pytest.mark.parametrize(
    ("client_ip", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("192.168.5.7", True),
        ("192.168.50.7", False),
        ("10.1.2.200", True),
        ("10.1.20.1", False),
        ("::ffff:10.1.2.3", True),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_trusted_client_networks(client_ip: str, expected: bool) -> None:
    assert allowed("remote.test", client_ip) is expected


def test_authenticated_client_relays() -> None:
    decision = relay_allowed(
        "remote.test",
        client_ip="203.0.113.9",
        authenticated=True,
        snapshot=SNAPSHOT,
        networks=[],
        hosts_only=False,
    )
    assert decision.allowed
    assert "authenticated" in decision.reason


def test_configured_networks_replace_the_default() -> None:
    decision = relay_allowed(
        "remote.test",
        client_ip="127.0.0.1",
        authenticated=False,
        snapshot=SNAPSHOT,
        networks=["198.51.100.0/24"],
        hosts_only=False,
    )
    assert not decision.allowed
    assert "remote.test" in decision.reason


@pytest.mark.parametrize(
    ("hostname", "hosts_only", "expected"),
    [
        ("hosted.test", False, True),
        ("pc1.hosted.test", False, True),
        ("pc1.hosted.test", True, False),
        ("pc1.friend.example", False, True),
        ("friend.example", True, True),
        ("PC1.Hosted.Test.", False, True),
        ("hosted.test.evil.test", False, False),
        (None, False, False),
    ],
)
def test_client_hostname(hostname: str | None, hosts_only: bool, expected: bool) -> None:
    assert allowed("remote.test", client_hostname=hostname, hosts_only=hosts_only) is expected


def test_reasons_name_what_matched() -> None:
    reason = relay_allowed(
        "x.friend.example",
        client_ip="203.0.113.9",
        authenticated=False,
        snapshot=SNAPSHOT,
        networks=LOOPBACK,
        hosts_only=False,
    ).reason
    assert "friend.example" in reason
    reason = relay_allowed(
        "remote.test",
        client_ip="10.1.2.9",
        authenticated=False,
        snapshot=SNAPSHOT,
        networks=LOOPBACK,
        hosts_only=False,
    ).reason
    assert "10.1.2.0/24" in reason


# -- relay-domains entries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("acme.com", RelayRule("acme.com", "domain")),
        ("Friend.Example.", RelayRule("friend.example", "domain")),
        ("192.168.5", RelayRule("192.168.5.0/24", "network")),
        ("10", RelayRule("10.0.0.0/8", "network")),
        ("172.16", RelayRule("172.16.0.0/16", "network")),
        ("192.0.2.1", RelayRule("192.0.2.1/32", "network")),
        ("IPv6:2001:db8::", RelayRule("2001:db8::/32", "network")),
        ("ipv6:2001:DB8", RelayRule("2001:db8::/32", "network")),
        ("IPv6:2001:db8:1:2::", RelayRule("2001:db8:1:2::/64", "network")),
        ("IPv6:2001:db8::1", RelayRule("2001:db8::1/128", "network")),
        ("IPv6:2001:db8:0:0:0:0:0:0", RelayRule("2001:db8::/128", "network")),
    ],
)
def test_rule_from_class_entry(entry: str, rule: RelayRule) -> None:
    assert relay_rule_from_class_entry(entry) == rule


@pytest.mark.parametrize(
    "entry",
    ["", "300.1", "1.2.3.4.5", "192.168.5.0/24", "IPv6:", "IPv6:::", "IPv6:zz::", "a b", "x@y"],
)
def test_bad_class_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        relay_rule_from_class_entry(entry)


@pytest.mark.parametrize(
    ("rule", "entry"),
    [
        (RelayRule("acme.com", "domain"), "acme.com"),
        (RelayRule("192.168.5.0/24", "network"), "192.168.5"),
        (RelayRule("10.0.0.0/8", "network"), "10"),
        (RelayRule("192.0.2.1/32", "network"), "192.0.2.1"),
        (RelayRule("2001:db8::/32", "network"), "IPv6:2001:db8::"),
        (RelayRule("2001:db8::/128", "network"), "IPv6:2001:db8:0:0:0:0:0:0"),
    ],
)
def test_class_entry_from_rule(rule: RelayRule, entry: str) -> None:
    assert class_entry_from_relay_rule(rule) == entry


@pytest.mark.parametrize("pattern", ["192.168.0.0/20", "0.0.0.0/0", "2001:db8::/36", "::/0"])
def test_networks_the_legacy_file_cannot_hold(pattern: str) -> None:
    with pytest.raises(ValueError):
        class_entry_from_relay_rule(RelayRule(pattern, "network"))


@given(st.ip_addresses(v=4), st.sampled_from([8, 16, 24, 32]))
def test_ipv4_round_trip(address: ipaddress.IPv4Address, prefix: int) -> None:
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    rule = RelayRule(str(net), "network")
    assert relay_rule_from_class_entry(class_entry_from_relay_rule(rule)) == rule


@given(st.ip_addresses(v=6), st.integers(min_value=1, max_value=8))
def test_ipv6_round_trip(address: ipaddress.IPv6Address, groups: int) -> None:
    net = ipaddress.ip_network(f"{address}/{16 * groups}", strict=False)
    rule = RelayRule(str(net), "network")
    assert relay_rule_from_class_entry(class_entry_from_relay_rule(rule)) == rule
