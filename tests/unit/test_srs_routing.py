"""SRS in routing and delivery planning: pure functions over plain data, as vectors."""

from __future__ import annotations

import pytest

from daisymail.delivery import plan_delivery
from daisymail.directory.model import Domain, Mailbox, Snapshot
from daisymail.mailauth.srs import SRSKeys
from daisymail.routing.addresses import split_address
from daisymail.routing.recipients import Deliver, Forward, Reject, resolve_recipient

NOW = 1_800_000_000.0
KEYS = SRSKeys("test-secret")
SNAP = Snapshot(
    domains={"example.test": Domain("example.test"), "other.test": Domain("other.test")},
    mailboxes={"box": Mailbox("box")},
    address_rules={"a@example.test": "box", "fwd@example.test": "out@far.test"},
)


def reverse(address: str) -> str | None:
    return KEYS.reverse(address, now=NOW)


def srs0(sender: str, domain: str = "example.test", age_days: float = 0) -> str:
    return KEYS.forward(sender, domain, now=NOW - age_days * 86400)


@pytest.mark.parametrize(
    ("rcpt", "expected"),
    [
        (srs0("alice@sender.test"), Forward("alice@sender.test")),
        (srs0("alice@sender.test", "other.test"), Forward("alice@sender.test")),
        (srs0("alice@sender.test", age_days=20), Forward("alice@sender.test")),
        (srs0("a@example.test", "other.test"), Deliver("box", None)),  # back to a local user
        (
            KEYS.forward("SRS0=hash=TT=orig.test=bob@first.test", "example.test"),
            Forward("SRS0=hash=TT=orig.test=bob@first.test"),
        ),
        (srs0("alice@sender.test", age_days=30), "expired"),
        ("SRS0=AAAA=AB=sender.test=alice@example.test", "forged"),
        ("SRS0=broken@example.test", "malformed"),
    ],
)
def test_bounces_to_srs_addresses(rcpt: str, expected: object) -> None:
    decision = resolve_recipient(split_address(rcpt), SNAP, reverse).decision
    if isinstance(expected, str):
        assert isinstance(decision, Reject), expected
        assert (decision.code, decision.enhanced) == (550, "5.1.1")
        assert decision.text.endswith("User unknown (invalid SRS address)")
    else:
        assert decision == expected


def test_without_srs_an_srs_address_is_an_ordinary_one() -> None:
    decision = resolve_recipient(split_address(srs0("alice@sender.test")), SNAP).decision
    assert isinstance(decision, Reject) and decision.text.endswith("User unknown")


@pytest.mark.parametrize(
    ("sender", "forward_sender"),
    [
        ("alice@sender.test", "SRS0="),
        ("demo@example.test", None),  # a hosted sender: our SPF covers it already
        ("", None),  # the null sender stays null
    ],
)
def test_plan_rewrites_forwards_only(sender: str, forward_sender: str | None) -> None:
    routed = [
        ("fwd@example.test", Forward("out@far.test"), {}),
        ("a@example.test", Deliver("box", None), {}),
    ]
    plan = plan_delivery(routed, SNAP, sender=sender, srs=KEYS)
    assert [m.name for m in plan.mailboxes] == ["box"]
    if forward_sender is None:
        assert [r.address for r in plan.queued] == ["out@far.test"] and not plan.forwarded
    else:
        assert not plan.queued and [r.address for r in plan.forwarded] == ["out@far.test"]
        assert plan.forward_sender.startswith(forward_sender)
        assert plan.forward_sender.endswith("=sender.test=alice@example.test")
        assert KEYS.reverse(plan.forward_sender) == sender
