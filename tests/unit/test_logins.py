"""The one login resolver (logins.py): teapop login names (SPEC §1.3, §1.4) and the §5.7
vectors under Daisy's decisions, default domains, and the throttle key per account.

The Snapshot below is what the importer makes of the §5.7 files: the traps of T6-T8
(blank line, unterminated line, entries without `max`, max 0) are imported, so those
accounts log in under Daisy. teapop.passwd domains become legacy (case-sensitive)
Domain records; ``empty`` logins have domain ""; ``default:*:reject`` is a Domain
record without logins.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.directory.model import Domain, Login, Snapshot
from daisymail.logins import resolve_login, split_login, throttle_key


def legacy(name: str) -> Domain:
    return Domain(name, fallback=True, login_case_sensitive=True, origin="legacy")


def login(user: str, domain: str, mailbox: str) -> Login:
    return Login(user, domain, "hash", mailbox)


T57 = Snapshot(
    domains={
        d: legacy(d)
        for d in (
            "acme.com",
            "example.org",
            "legacy.test",
            "hashed.test",
            "max.test",
            "default",
            "legacy2.test",
            "legacy3.test",
            "legacy4.test",
        )
    },
    logins=(
        login("john", "acme.com", "jsmith"),
        login("mary", "acme.com", "mary"),
        login("bob", "acme.com", "bobbox"),
        login("afterblank", "acme.com", "after"),
        login("nonl", "acme.com", "nonl"),
        login("john", "example.org", "exjohn"),
        login("john", "legacy.test", "S/legacyjohn"),
        login("john", "legacy2.test", "S/legacyjohn"),
        login("john", "legacy3.test", "S/legacyjohn"),
        login("john", "legacy4.test", "S/legacyjohn"),
        login("john", "hashed.test", "jsmith"),
        login("u1", "max.test", "u1"),
        login("u2", "max.test", "u2"),
        login("plain", "", "plainbox"),
    ),
)


def resolve(name: str, snapshot: Snapshot = T57, default_domain: str = "") -> str | None:
    found = resolve_login(snapshot, name, default_domain=default_domain)
    return None if found is None else found.mailbox


@pytest.mark.parametrize(
    ("name", "mailbox"),
    [
        ("john@acme.com", "jsmith"),  # T1
        ("john%acme.com", "jsmith"),  # T2
        ("john@ACME.COM", "jsmith"),  # T3
        ("John@acme.com", None),  # T3: user names are case-sensitive in teapop domains
        ("john@Example.org", "exjohn"),  # T4
        ("mary@acme.com", "mary"),  # T5
        ("bob@acme.com", "bobbox"),  # T5
        ("afterblank@acme.com", "after"),  # T6: imported with a warning
        ("nonl@acme.com", "nonl"),  # T7: imported with a warning
        ("john@legacy.test", "S/legacyjohn"),  # T8: imported with a warning
        ("john@legacy2.test", "S/legacyjohn"),  # T8
        ("john@legacy3.test", "S/legacyjohn"),  # T8
        ("john@legacy4.test", "S/legacyjohn"),  # T9
        ("john@hashed.test", "jsmith"),  # T10
        ("u2@max.test", "u2"),  # T11
        ("plain", "plainbox"),  # T12
        ("plain@", "plainbox"),  # T12
        ("plain   ", "plainbox"),
        (" plain", None),  # leading spaces are part of the name
        ("nobody@acme.com", None),  # a listed domain decides; no fallback to default
        ("john@unknown.test", None),  # default:*:reject
        ("plain@unknown.test", None),
    ],
)
def test_t_vectors(name: str, mailbox: str | None) -> None:
    assert resolve(name) == mailbox


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("john@acme.com", ("john", "acme.com")),
        ("john%ACME.Com", ("john", "acme.com")),
        ("a%b@acme.com", ("a", "b@acme.com")),
        ("a@b%acme.com", ("a", "b%acme.com")),
        ("plain", ("plain", "")),
        ("plain@", ("plain", "")),
        ("john@acme.com   ", ("john", "acme.com")),
        ("  john@acme.com", ("  john", "acme.com")),
        ("john@acme.com\t", ("john", "acme.com\t")),
        ("Mixed.Case@Dom", ("Mixed.Case", "dom")),
        ("@acme.com", ("", "acme.com")),
        ("", ("", "")),
    ],
)
def test_split_login(name: str, expected: tuple[str, str]) -> None:
    assert split_login(name) == expected


@given(st.text())
def test_split_login_rejoins(name: str) -> None:
    user, domain = split_login(name)
    stripped = name.rstrip(" ")
    assert "@" not in user and "%" not in user
    assert stripped.startswith(user)
    if len(user) < len(stripped):
        assert stripped[len(user) + 1 :].lower() == domain


DEFAULTS = Snapshot(
    domains={"native.test": Domain("native.test")},
    logins=(
        login("Alice", "native.test", "alice"),
        login("john", "default", "fallback-john"),
    ),
)


def test_default_pseudo_domain_catches_unknown_domains() -> None:
    assert resolve("john@nowhere.test", DEFAULTS) == "fallback-john"
    assert resolve("john", DEFAULTS) == "fallback-john"
    assert resolve("mary@nowhere.test", DEFAULTS) is None


def test_known_domain_never_falls_back_to_default() -> None:
    assert resolve("john@native.test", DEFAULTS) is None


def test_native_domains_ignore_user_case() -> None:
    assert resolve("alice@Native.Test", DEFAULTS) == "alice"
    assert resolve("ALICE%native.test", DEFAULTS) == "alice"


NATIVE = Snapshot(
    domains={"native.test": Domain("native.test")},
    logins=(login("alice", "native.test", "alice"),),
)


def test_default_domain_for_names_without_domain() -> None:
    assert resolve("alice", NATIVE, default_domain="Native.Test") == "alice"
    assert resolve("alice", NATIVE) is None
    assert resolve("alice@other.test", NATIVE, default_domain="native.test") is None


def test_empty_entry_wins_over_default_domain() -> None:
    snapshot = Snapshot(
        domains=NATIVE.domains, logins=(*NATIVE.logins, login("bob", "", "bob-empty"))
    )
    assert resolve("bob", snapshot, default_domain="native.test") == "bob-empty"
    assert resolve("alice", snapshot, default_domain="native.test") is None


def test_default_pseudo_domain_wins_over_default_domain() -> None:
    snapshot = Snapshot(
        domains={**NATIVE.domains, "default": legacy("default")}, logins=NATIVE.logins
    )
    assert resolve("alice", snapshot, default_domain="native.test") is None


def test_domain_record_without_logins_decides() -> None:
    snapshot = Snapshot(
        domains={"empty.test": Domain("empty.test")},
        logins=(login("john", "default", "fallback"),),
    )
    assert resolve("john@empty.test", snapshot) is None


def test_login_address_resolves_to_itself() -> None:
    """Sessions keep login.address; resolving it again must give the same account."""
    for snapshot in (T57, DEFAULTS, NATIVE):
        for account in snapshot.logins:
            assert resolve_login(snapshot, account.address) == account


@pytest.mark.parametrize(
    "name", ["bob@dom.test", "bob%dom.test", "BOB@DOM.TEST", "bob@dom.test ", "Bob%Dom.Test  "]
)
def test_one_throttle_key_per_account(name: str) -> None:
    snapshot = Snapshot(
        domains={"dom.test": Domain("dom.test")}, logins=(login("bob", "dom.test", "bob"),)
    )
    found = resolve_login(snapshot, name)
    assert found is not None
    assert throttle_key(name, found) == "bob@dom.test"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("ghost@dom.test", "ghost@dom.test"),
        ("GHOST%Dom.Test ", "ghost@dom.test"),
        ("ghost", "ghost@dom.test"),  # the default domain filled in
        ("ghost@", "ghost@dom.test"),
        ("ghost@other.test", "ghost@other.test"),
    ],
)
def test_unknown_names_count_under_their_normalized_spelling(name: str, key: str) -> None:
    assert resolve_login(NATIVE, name, default_domain="Dom.Test") is None
    assert throttle_key(name, None, default_domain="Dom.Test") == key


def test_case_sensitive_domain_keeps_accounts_apart_in_resolution() -> None:
    snapshot = Snapshot(
        domains={"legacy.test": legacy("legacy.test")},
        logins=(login("John", "legacy.test", "upper"), login("john", "legacy.test", "lower")),
    )
    assert resolve("John@legacy.test", snapshot) == "upper"
    assert resolve("john%LEGACY.test", snapshot) == "lower"
    assert resolve("JOHN@legacy.test", snapshot) is None
