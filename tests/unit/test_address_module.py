"""routing/addresses.py as the one address module: the splitters every layer calls, the
strict wire parser, and the trailing-dot rule (issue 11, items 4 and 17)."""

from __future__ import annotations

import pytest

from daisymail.directory.model import Domain, Mailbox, Snapshot
from daisymail.routing.addresses import (
    Address,
    AddressError,
    domain_of,
    normalize_domain,
    parse_path,
    parse_smtp_path,
    split_address,
    valid_smtp_domain,
)
from daisymail.routing.recipients import Deliver, Remote, resolve_recipient


@pytest.mark.parametrize(
    ("address", "local", "domain"),
    [
        ("bob@example.test", "bob", "example.test"),
        ("Bob@Example.TEST", "Bob", "example.test"),
        ("bob@example.test.", "bob", "example.test"),
        ("postmaster", "postmaster", ""),
        ('"a@b"@example.test', '"a@b"', "example.test"),
        ("x%y@example.test", "x%y", "example.test"),
        ("u@[192.0.2.1]", "u", "[192.0.2.1]"),
        ("u@[IPv6:2001:DB8::1]", "u", "[ipv6:2001:db8::1]"),
        ("", "", ""),
    ],
)
def test_split_address(address: str, local: str, domain: str) -> None:
    assert split_address(address) == Address(local, domain)
    assert domain_of(address) == domain


@pytest.mark.parametrize(
    ("domain", "normal"),
    [
        ("example.test", "example.test"),
        ("Example.TEST.", "example.test"),
        (" example.test ", "example.test"),
        ("", ""),
    ],
)
def test_normalize_domain(domain: str, normal: str) -> None:
    assert normalize_domain(domain) == normal


SMTP_OK = [
    ("bob@example.test", "bob@example.test"),
    ("bob@example.test.", "bob@example.test"),
    ("bob@Example.TEST.", "bob@Example.TEST"),
    ("@relay.test.:bob@example.test.", "bob@example.test"),
    ("first.last@a.b.c.", "first.last@a.b.c"),
    ("u@[192.0.2.1]", "u@[192.0.2.1]"),
    ('"x."@example.test.', '"x."@example.test'),
]


@pytest.mark.parametrize(("path", "address"), SMTP_OK)
def test_smtp_path_accepted(path: str, address: str) -> None:
    assert parse_smtp_path(path, utf8=False, null_ok=False, postmaster_ok=False) == address


SMTP_BAD = [
    "bob@example.test..",
    "bob@.",
    "bob@.example.test",
    "bob@example..test",
    "bob@[192.0.2.1].",
    "bob@",
    "bob.@example.test",
    "@relay.test..:bob@example.test",
]


@pytest.mark.parametrize("path", SMTP_BAD)
def test_smtp_path_refused(path: str) -> None:
    with pytest.raises(ValueError):
        parse_smtp_path(path, utf8=False, null_ok=False, postmaster_ok=False)


def test_smtp_path_utf8_trailing_dot() -> None:
    assert parse_smtp_path(
        "jürgen@bücher.test.", utf8=True, null_ok=False, postmaster_ok=False
    ) == ("jürgen@bücher.test")
    assert valid_smtp_domain("bücher.test.", utf8=True)
    assert not valid_smtp_domain("bücher.test.", utf8=False)


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("<bob@example.test.>", True),
        ("<bob@example.test..>", False),
        ("<bob@.>", False),
        ("<bob@[192.0.2.1].>", False),
    ],
)
def test_both_parsers_agree_on_trailing_dots(path: str, ok: bool) -> None:
    """The admin-side parser and the wire parser take the same domains."""
    inner = path[1:-1]
    try:
        wire = parse_smtp_path(inner, utf8=False, null_ok=False, postmaster_ok=False)
    except ValueError:
        wire = None
    try:
        lax = parse_path(path)
    except AddressError:
        lax = None
    assert (wire is not None) == ok
    assert (lax is not None) == ok
    if ok:
        assert lax is not None and wire is not None
        assert split_address(wire) == lax


ROUTING_SNAP = Snapshot(
    domains={"example.test": Domain("example.test")},
    mailboxes={"box": Mailbox("box")},
    address_rules={"bob@example.test": "box", "chain@example.test": "bob@example.test."},
)


@pytest.mark.parametrize(
    ("address", "decision"),
    [
        ("bob@example.test.", Deliver("box", None)),
        ("BOB@Example.Test.", Deliver("box", None)),
        ("chain@example.test", Deliver("box", None)),  # a table target with the dot
        ("x@remote.example.", Remote("x@remote.example")),
    ],
)
def test_routing_takes_the_trailing_dot(address: str, decision: object) -> None:
    assert resolve_recipient(split_address(address), ROUTING_SNAP).decision == decision
