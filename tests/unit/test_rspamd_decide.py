"""rspamd's answers to Daisy's decisions: pure vectors (the real daemon is in
tests/integration/test_spam_filter.py)."""

from __future__ import annotations

import pytest

from daisymail.filter.rspamd import CheckResult, FilterError, decide, parse_result


@pytest.mark.parametrize(
    ("action", "expected_action", "reply"),
    [
        ("reject", "reject", (554, "5.7.1", "spam!")),
        ("soft reject", "defer", (451, "4.7.1", "spam!")),
        ("greylist", "defer", (451, "4.7.1", "spam!")),
        ("add header", "junk", None),
        ("rewrite subject", "junk", None),
        ("no action", "accept", None),
    ],
)
def test_actions(action: str, expected_action: str, reply: object) -> None:
    d = decide(CheckResult(action, 7.5, 15.0, ("A", "B"), "spam!"))
    assert (d.action, d.reply) == (expected_action, reply)
    if expected_action == "junk":
        assert d.header == (
            b"X-Spam-Flag: YES\nX-Spam-Status: Yes, score=7.50 required=15.00 action='"
            + action.encode()
            + b"'\nX-Spam-Symbols: A,B\n"
        )
    if expected_action == "accept":
        assert d.header.startswith(b"X-Spam-Status: No, score=7.50")


def test_default_texts_and_no_injection() -> None:
    assert decide(CheckResult("reject", 20, 15)).reply == (554, "5.7.1", "Message refused as spam")
    assert decide(CheckResult("greylist", 5, 15)).reply == (
        451,
        "4.7.1",
        "Greylisted, try again later",
    )
    evil = decide(CheckResult("reject", 20, 15, (), "bad\r\n250 ok"))
    assert evil.reply == (554, "5.7.1", "bad  250 ok")
    unchecked = decide(None, "cannot connect:\r\nX-Spam-Flag: NO")
    assert unchecked.action == "accept"
    assert unchecked.header.count(b"\n") == 1
    assert unchecked.header.startswith(b"X-Spam-Status: Unchecked (rspamd: cannot connect:")


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"score": 1}', b'{"action": 5}', b'{"action": "x", "score": "y"}'],
)
def test_nonsense_is_a_filter_error(body: bytes) -> None:
    with pytest.raises(FilterError):
        parse_result(body)


def test_parse_result() -> None:
    r = parse_result(
        b'{"action":"add header","score":6.5,"required_score":15,'
        b'"symbols":{"Z":{},"A":{}},"messages":{"smtp_message":"hm"}}'
    )
    assert r == CheckResult("add header", 6.5, 15.0, ("A", "Z"), "hm")
