"""genericstable semantics: the §5.4 vectors and the qualification rules around them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.directory.legacy.maps import parse_makemap_text
from daisymail.directory.model import Domain, Snapshot
from daisymail.routing.senders import rewrite_sender

HOST = "mail.hosting.test"
GENERICSTABLE = b"""\
johnacme\t\t\tjohn@acme.com
janeacme@mail.hosting.test\tjane@acme.com
sam\t\t\t\tsamuel
@mail.hosting.test\t\t%1@acme.com
"""


def _snapshot(table: bytes = GENERICSTABLE, host_in_g: bool = True) -> Snapshot:
    return Snapshot(
        domains={
            "acme.com": Domain("acme.com", generics=True),
            HOST: Domain(HOST, generics=host_in_g),
            "nogenerics.test": Domain("nogenerics.test", generics=False),
        },
        sender_rules=parse_makemap_text(table, "genericstable").entries,
    )


SNAPSHOT = _snapshot()


@pytest.mark.parametrize(
    ("vector", "sender", "expected"),
    [
        ("G1", "johnacme", "john@acme.com"),
        ("G1", "JohnAcme", "john@acme.com"),
        ("G2", "johnacme@mail.hosting.test", "johnacme@acme.com"),
        ("G3", "janeacme@mail.hosting.test", "jane@acme.com"),
        ("G3", "janeacme", "jane@acme.com"),
        ("G4", "sam", "samuel@mail.hosting.test"),
        ("G5", "other@mail.hosting.test", "other@acme.com"),
        ("%1 keeps case", "Other@MAIL.hosting.test", "Other@acme.com"),
        ("angle brackets", "<sam>", "samuel@mail.hosting.test"),
    ],
)
def test_vectors(vector: str, sender: str, expected: str) -> None:
    assert rewrite_sender(sender, SNAPSHOT, HOST) == expected, vector


@pytest.mark.parametrize(
    "sender",
    [
        "other",  # unqualified: no @domain lookup, no bare entry
        "johnacme@remote.test",  # not a hosted domain
        "johnacme@nogenerics.test",  # hosted but not in class G
        "johnacme@sub.acme.com",  # G matches exactly, not subdomains
        "",
        "<>",
    ],
)
def test_not_rewritten(sender: str) -> None:
    assert rewrite_sender(sender, SNAPSHOT, HOST) is None


def test_hostname_is_not_automatically_in_g() -> None:
    snapshot = _snapshot(host_in_g=False)
    assert rewrite_sender("johnacme@mail.hosting.test", snapshot, HOST) is None
    assert rewrite_sender("johnacme", snapshot, HOST) == "john@acme.com"


def test_bare_user_entry_applies_to_any_g_domain() -> None:
    assert rewrite_sender("sam@acme.com", SNAPSHOT, HOST) == "samuel@mail.hosting.test"


def test_result_equal_to_input_is_unchanged() -> None:
    table = b"john@acme.com john@acme.com\n"
    assert rewrite_sender("john@acme.com", _snapshot(table), HOST) is None


PLUS_TABLE = b"""\
list+*@acme.com\tlist-%1@acme.com
list@acme.com\tlist@lists.acme.com
tag+*\t\ttagged-%1
tag\t\tuntagged
@acme.com\tcatch-%1@acme.com
"""


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("list+news@acme.com", "list-news@acme.com"),
        ("list@acme.com", "list@lists.acme.com"),
        ("tag+x@acme.com", "catch-tag+x@acme.com"),  # @domain before the bare forms
        ("tag+x", "tagged-x@mail.hosting.test"),
        ("tag", "untagged@mail.hosting.test"),
        ("Tag+X", "tagged-X@mail.hosting.test"),
    ],
)
def test_plus_forms(sender: str, expected: str) -> None:
    assert rewrite_sender(sender, _snapshot(PLUS_TABLE), HOST) == expected


def test_unqualified_tries_hostname_keys_first() -> None:
    table = b"tag+*@mail.hosting.test\thost-%1\ntag+*\tbare-%1\n"
    assert rewrite_sender("tag+x", _snapshot(table), HOST) == "host-x@mail.hosting.test"


def test_trailing_space_and_cr_in_values_are_dropped() -> None:
    table = b"sam samuel@acme.com \r\n"
    assert rewrite_sender("sam", _snapshot(table), HOST) == "samuel@acme.com"


@given(st.text(st.sampled_from("abcXYZ09.-_+"), min_size=1, max_size=10))
def test_lookup_is_case_insensitive(local: str) -> None:
    table = b"@mail.hosting.test fixed@acme.com\n"
    lower = rewrite_sender(f"{local.lower()}@{HOST}", _snapshot(table), HOST)
    upper = rewrite_sender(f"{local.upper()}@{HOST.upper()}", _snapshot(table), HOST)
    assert lower == upper == "fixed@acme.com"
