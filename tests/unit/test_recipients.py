"""virtusertable semantics: the §5.3 vectors against the §5.2 domains, plus strict
domains, chains, details, relay paths and error entries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.directory.legacy.maps import parse_class_file, parse_makemap_text
from daisymail.directory.model import Domain, Mailbox, Snapshot
from daisymail.routing.addresses import Address, parse_path
from daisymail.routing.recipients import (
    Deliver,
    Forward,
    Reject,
    Remote,
    Resolution,
    resolve_recipient,
)
from tests.spec_data import LOCAL_HOST_NAMES, VIRTUSERTABLE
from tests.spec_data import MAILBOXES as SPEC_MAILBOXES

MAILBOXES = [*SPEC_MAILBOXES, "plus-a-", "p-x-y-"]


def _snapshot(
    table: bytes = VIRTUSERTABLE, mailboxes: list[str] = MAILBOXES, **extra: Domain
) -> Snapshot:
    names, _ = parse_class_file(LOCAL_HOST_NAMES, "local-host-names")
    domains = {n.lower(): Domain(n.lower(), fallback=True, origin="legacy") for n in names}
    domains["localhost"] = Domain("localhost", fallback=True, origin="legacy")
    domains.update(extra)
    rules = parse_makemap_text(table, "virtusertable")
    assert rules.findings == []
    return Snapshot(
        domains=domains,
        mailboxes={m: Mailbox(m) for m in mailboxes},
        address_rules=rules.entries,
    )


SNAPSHOT = _snapshot()


def resolve(addr: str, snapshot: Snapshot = SNAPSHOT) -> Resolution:
    parsed = parse_path(f"<{addr}>")
    assert parsed is not None
    return resolve_recipient(parsed, snapshot)


@pytest.mark.parametrize(
    ("vector", "addr", "decision"),
    [
        ("V1", "john@acme.com", Deliver("johnacme", None)),
        ("V2", "John@ACME.Com", Deliver("johnacme", None)),
        ("V3", "info@acme.com", Forward("jane@elsewhere.example")),
        ("V9", "nobody@acme.com", Deliver("catchall", None)),
        ("V10", "johnacme@acme.com", Deliver("catchall", None)),
        ("V11", "sales+foo@acme.com", Deliver("salesbox", "foo")),
        ("V12", "sales+@acme.com", Deliver("salesbox", "")),
        ("V13", "sales@acme.com", Deliver("catchall", None)),
        ("V14", "bob+spam@acme.com", Deliver("spamtrap", None)),
        ("V15", "bob+x@acme.com", Deliver("bobplus-x", None)),
        ("V16", "bob@acme.com", Deliver("catchall", None)),
        ("V17", "john+detail@acme.com", Deliver("johnacme", None)),
        ("V18", "anyone@example.org", Forward("anyone@other.example")),
        ("V19", "CaseTest@example.org", Forward("CaseTest@other.example")),
        ("V20", "CaseTest@case.test", Deliver("casetest", None)),
        ("C2", "user@spaced.test", Reject(550, "5.1.1", "<user@spaced.test>... User unknown")),
        ("C2", "someuser@spaced.test", Deliver("someuser", None)),
        ("C2", "x@baz.net", Remote("x@baz.net")),
        ("C3", "mixed@EXAMPLE.org", Deliver("mixeduser", None)),
        ("chain", "alias@example.org", Deliver("johnacme", None)),
        ("trailing dot", "john@acme.com.", Deliver("johnacme", None)),
        ("dots", "dot.ted@acme.com", Deliver("dotted", None)),
        ("quoted", '"quoted local"@acme.com', Deliver("catchall", None)),
        ("%3", "plus+a@bar.net", Deliver("plus-a-", "a")),
        ("+*", "x+y@bar.net", Deliver("p-x-y-", "y")),
        ("fallback", "someuser@mail.hosting.test", Deliver("someuser", None)),
        ("fallback", "other+tag@mail.hosting.test", Deliver("other", "tag")),
        ("fallback", "Other@localhost", Deliver("other", None)),
    ],
)
def test_vectors(vector: str, addr: str, decision: object) -> None:
    assert resolve(addr).decision == decision, vector


@pytest.mark.parametrize(
    ("vector", "addr", "reply"),
    [
        ("V4", "joe@acme.com", "550 5.0.0 <joe@acme.com>... No such user here"),
        ("V5", "jax@acme.com", "550 5.7.0 <jax@acme.com>... Address invalid"),
        ("V6", "nocode@acme.com", "553 5.3.0 <nocode@acme.com>... User unknown here"),
        ("V7", "tempfail@acme.com", "450 4.2.2 <tempfail@acme.com>... mailbox full"),
        (
            "V8",
            "quoted@acme.com",
            "550 5.1.1 <quoted@acme.com>... Sorry, no mailbox here by that name",
        ),
        (
            "V29",
            "loop@example.org",
            "554 5.0.0 rewrite: excessive recursion (max 50), ruleset canonify",
        ),
    ],
)
def test_reply_vectors(vector: str, addr: str, reply: str) -> None:
    decision = resolve(addr).decision
    assert isinstance(decision, Reject), vector
    assert decision.reply() == reply


def test_tempfail_is_temporary() -> None:
    decision = resolve("tempfail@acme.com").decision
    assert isinstance(decision, Reject) and decision.temporary
    decision = resolve("joe@acme.com").decision
    assert isinstance(decision, Reject) and not decision.temporary


def test_missing_target_mailbox_is_user_unknown_for_the_original() -> None:
    snapshot = _snapshot(mailboxes=["catchall"])
    for addr in ("john@acme.com", "alias@example.org"):
        decision = resolve(addr, snapshot).decision
        assert isinstance(decision, Reject)
        assert decision.reply() == f"550 5.1.1 <{addr}>... User unknown"


@pytest.mark.parametrize(
    "addr", ["x%remote.test@acme.com", "remote.test!x@acme.com", "a%b@mail.hosting.test", "u!v"]
)
def test_relay_paths_are_refused_before_any_catch_all(addr: str) -> None:
    res = resolve(addr)
    assert isinstance(res.decision, Reject)
    assert res.decision.reply() == f"550 5.7.1 <{addr}>... Relaying denied"
    assert res.rule is None


def test_percent_in_a_quoted_local_part_is_only_a_name() -> None:
    assert resolve('"x%remote.test"@acme.com').decision == Deliver("catchall", None)


def test_remote_domain_is_left_to_the_caller() -> None:
    res = resolve("x%y@remote.test")
    assert res.decision == Remote("x%y@remote.test")
    assert res.rule is None


def test_unqualified_addresses_are_mailbox_names() -> None:
    assert resolve_recipient(Address("JohnAcme", ""), SNAPSHOT).decision == Deliver(
        "johnacme", None
    )
    assert resolve_recipient(Address("other+x", ""), SNAPSHOT).decision == Deliver("other", "x")
    decision = resolve_recipient(Address("nobody", ""), SNAPSHOT).decision
    assert isinstance(decision, Reject)
    assert decision.reply() == "550 5.1.1 <nobody>... User unknown"


def test_rule_and_steps_explain_the_lookup() -> None:
    res = resolve("john+detail@acme.com")
    assert res.rule == "john@acme.com"
    assert res.steps[:6] == (
        "resolving john+detail@acme.com in hosted domain acme.com (legacy fallback)",
        "lookup john+detail@acme.com: no entry",
        "lookup john++@acme.com: no entry",
        "lookup john+*@acme.com: no entry",
        "lookup john@acme.com: found 'johnacme'",
        "deliver to mailbox johnacme",
    )
    res = resolve("CaseTest@example.org")
    assert res.rule == "@example.org"
    assert "substituted %1='CaseTest': 'CaseTest@other.example'" in res.steps


def test_chain_rule_is_the_first_hop_and_steps_show_every_hop() -> None:
    res = resolve("alias@example.org")
    assert res.rule == "alias@example.org"
    assert "resolving john@acme.com in hosted domain acme.com (legacy fallback)" in res.steps
    assert "lookup john@acme.com: found 'johnacme'" in res.steps


def test_plus_key_order_without_detail() -> None:
    # An empty detail skips the ++ keys: sales+ matches sales+* but bob+ is not bob++.
    assert resolve("bob+@acme.com").decision == Deliver("catchall", None)
    steps = resolve("bob+@acme.com").steps
    assert not any("++" in s for s in steps)


def test_empty_user_before_plus_is_not_a_detail() -> None:
    # sendmail's $+ + $* needs a user before the +: "+x" is looked up whole.
    res = resolve("+x@bar.net")
    assert res.steps[1] == "lookup +x@bar.net: no entry"
    assert isinstance(res.decision, Reject)


# -- strict domains ----------------------------------------------------------------------

STRICT_TABLE = b"""\
a@strict.test\tamailbox
fwd@strict.test\tsomeone@remote.test
chain@strict.test\ta@strict.test
legacy@strict.test\tjohn@acme.com
"""


def _strict() -> Snapshot:
    return _snapshot(
        VIRTUSERTABLE + STRICT_TABLE,
        [*MAILBOXES, "amailbox"],
        **{"strict.test": Domain("strict.test", fallback=False)},
    )


@pytest.mark.parametrize(
    ("addr", "decision"),
    [
        ("a@strict.test", Deliver("amailbox", None)),
        ("A+tag@Strict.Test", Deliver("amailbox", None)),
        ("fwd@strict.test", Forward("someone@remote.test")),
        ("chain@strict.test", Deliver("amailbox", None)),
        ("legacy@strict.test", Deliver("johnacme", None)),
        ("someuser@strict.test", Reject(550, "5.1.1", "<someuser@strict.test>... User unknown")),
        ("amailbox@strict.test", Reject(550, "5.1.1", "<amailbox@strict.test>... User unknown")),
    ],
)
def test_strict_domain(addr: str, decision: object) -> None:
    assert resolve(addr, _strict()).decision == decision


def test_strict_and_fallback_are_named_in_steps() -> None:
    snapshot = _strict()
    assert any("strict" in s for s in resolve("someuser@strict.test", snapshot).steps)
    assert any("legacy rule" in s for s in resolve("someuser@spaced.test", snapshot).steps)


# -- chains and loops ---------------------------------------------------------------------


def _chain(hops: int) -> Snapshot:
    lines = [f"c{i}@acme.com c{i + 1}@acme.com" for i in range(hops)]
    lines.append(f"c{hops}@acme.com johnacme")
    return _snapshot("\n".join(lines).encode() + b"\n")


def test_fifty_hops_are_allowed_fifty_one_are_a_loop() -> None:
    assert resolve("c0@acme.com", _chain(50)).decision == Deliver("johnacme", None)
    decision = resolve("c0@acme.com", _chain(51)).decision
    assert isinstance(decision, Reject)
    assert decision.code == 554


def test_two_address_loop() -> None:
    table = b"ping@acme.com pong@example.org\npong@example.org PING@acme.com\n"
    res = resolve("ping@acme.com", _snapshot(table))
    assert isinstance(res.decision, Reject)
    assert res.decision.reply().startswith("554 5.0.0 rewrite: excessive recursion")


def test_case_changing_chain_terminates() -> None:
    # %1 keeps case, so the chain sees Ping, then ping: distinct strings, same key.
    table = b"@case.test %1@example.org\n@example.org ping@case.test\n"
    decision = resolve("Ping@case.test", _snapshot(table)).decision
    assert isinstance(decision, Reject) and decision.code == 554


# -- error entries and substitution ------------------------------------------------------


@pytest.mark.parametrize(
    ("rhs", "reply"),
    [
        ("error:nouser 450 try later", "450 4.0.0 <t@acme.com>... try later"),
        ("error:550 no tag here", "550 5.0.0 <t@acme.com>... no tag here"),
        ("error:nouser 550 5.1.1 with enhanced", "550 5.1.1 <t@acme.com>... with enhanced"),
        ("error:5.2.2:mailbox full", "550 5.2.2 <t@acme.com>... mailbox full"),
        ("error:4.2.2:mailbox full", "450 4.2.2 <t@acme.com>... mailbox full"),
        ("ERROR:nouser 551 Moved", "551 5.0.0 <t@acme.com>... Moved"),
        ("error:nouser  550   spaced    text", "550 5.0.0 <t@acme.com>... spaced text"),
        ('error:nouser "550 kept   spacing"', "550 5.0.0 <t@acme.com>... kept   spacing"),
        ("error:nouser 550 No such user here\r", "550 5.0.0 <t@acme.com>... No such user here"),
        ("error:nouser", "553 5.3.0 <t@acme.com>... Address rejected"),
        ("error:nouser 5500 not a code", "553 5.3.0 <t@acme.com>... 5500 not a code"),
        ("error:nouser %1 is gone", "553 5.3.0 <t@acme.com>... t is gone"),
    ],
)
def test_error_entries(rhs: str, reply: str) -> None:
    decision = resolve("t@acme.com", _snapshot(f"t@acme.com {rhs}\n".encode())).decision
    assert isinstance(decision, Reject)
    assert decision.reply() == reply


@pytest.mark.parametrize(
    ("rhs", "decision"),
    [
        ("johnacme\r", Deliver("johnacme", None)),
        ("johnacme  ", Deliver("johnacme", None)),
        ("JohnAcme", Deliver("johnacme", None)),
        ("50%off", Deliver("50%off", None)),
        ("%1%%x@elsewhere.example", Forward("T%x@elsewhere.example")),
        ("<jane@Elsewhere.Example>", Forward("jane@elsewhere.example")),
        ("error:nouser 550 key was %0", Reject(550, "5.0.0", "<T@acme.com>... key was t@acme.com")),
        ("bad target@x", Reject(451, "4.3.5", "<T@acme.com>... Local configuration error")),
        ("%2", Reject(451, "4.3.5", "<T@acme.com>... Local configuration error")),
    ],
)
def test_targets(rhs: str, decision: object) -> None:
    snapshot = _snapshot(f"t@acme.com {rhs}\n".encode(), [*MAILBOXES, "50%off"])
    assert resolve("T@acme.com", snapshot).decision == decision


def test_baz_net_rules_apply_once_the_domain_is_hosted() -> None:
    snapshot = _snapshot(**{"baz.net": Domain("baz.net", fallback=True)})
    assert resolve("Kim+list@baz.net", snapshot).decision == Forward("Kim+list@elsewhere.example")
    assert resolve("kim@baz.net", snapshot).decision == Forward("kim@elsewhere.example")


# -- properties ---------------------------------------------------------------------------

_local = st.text(st.sampled_from("abcxyzABCXYZ019.+-_"), min_size=1, max_size=12).filter(
    lambda s: not s.startswith(".")
)
_domain = st.sampled_from(["acme.com", "strict.test", "bar.net", "spaced.test", "remote.test"])
_PLAIN = _snapshot(
    b"john@acme.com johnacme\njohn+*@acme.com salesbox\na@strict.test amailbox\n"
    b"x@bar.net error:nouser 550 gone\n",
    [*MAILBOXES, "amailbox"],
    **{"strict.test": Domain("strict.test", fallback=False)},
)


@given(_local, _domain)
def test_case_of_the_local_part_never_matters_without_parameters(local: str, domain: str) -> None:
    lower = resolve_recipient(Address(local.lower(), domain), _PLAIN).decision
    upper = resolve_recipient(Address(local.upper(), domain), _PLAIN).decision
    if isinstance(lower, Reject) and isinstance(upper, Reject):
        assert (lower.code, lower.enhanced) == (upper.code, upper.enhanced)
    elif isinstance(lower, Remote) and isinstance(upper, Remote):
        assert lower.address.lower() == upper.address.lower()
    else:
        assert lower == upper


@given(_local, _domain)
def test_delivery_only_to_existing_mailboxes(local: str, domain: str) -> None:
    decision = resolve_recipient(Address(local, domain), SNAPSHOT).decision
    if isinstance(decision, Deliver):
        assert decision.mailbox in SNAPSHOT.mailboxes
