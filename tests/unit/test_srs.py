"""SRS: forward and reverse, re-forwarding, forged and expired addresses."""

from __future__ import annotations

import pytest

from daisymail.mailauth.srs import SRS, SRSError

NOW = 1_800_000_000.0
DAY = 86400
srs = SRS(b"s3cret", "fwd.example")
other = SRS(b"other-secret", "second.example")


def test_round_trip() -> None:
    rewritten = srs.forward("alice@orig.example", NOW)
    assert rewritten.startswith("SRS0=") and rewritten.endswith("=orig.example=alice@fwd.example")
    assert srs.reverse(rewritten, NOW + 3 * DAY) == "alice@orig.example"
    assert srs.reverse(rewritten.upper().replace("@FWD.EXAMPLE", "@fwd.example"), NOW) == (
        "ALICE@ORIG.EXAMPLE"
    )


@pytest.mark.parametrize("sender", ["", "bob@fwd.example", "bob@FWD.example."])
def test_left_alone(sender: str) -> None:
    assert srs.forward(sender, NOW) == sender


def test_second_hop_uses_srs1_back_to_the_first() -> None:
    first = srs.forward("alice@orig.example", NOW)
    second = other.forward(first, NOW)
    assert second.startswith("SRS1=") and "=fwd.example==" in second
    assert second.endswith("@second.example")
    assert other.reverse(second, NOW) == first  # back to the first forwarder
    assert srs.reverse(other.reverse(second, NOW), NOW) == "alice@orig.example"
    third = SRS(b"third", "third.example").forward(second, NOW)
    assert third.startswith("SRS1=") and "=fwd.example==" in third
    assert SRS(b"third", "third.example").reverse(third, NOW) == first


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("alice@fwd.example", "not an SRS address"),
        ("SRS0=xxxx=AB=orig.example=alice@elsewhere.example", "not an SRS address"),
        ("SRS0=xxxx=AB=orig.example=alice@fwd.example", "hash does not match"),
        ("SRS0=xxxx=orig.example@fwd.example", "malformed"),
        ("SRS1=xxxx=fwd.example=nodouble@fwd.example", "malformed"),
    ],
)
def test_refused(address: str, error: str) -> None:
    with pytest.raises(SRSError, match=error):
        srs.reverse(address, NOW)


def test_forged_with_another_key_and_expired() -> None:
    forged = SRS(b"guess", "fwd.example").forward("alice@orig.example", NOW)
    with pytest.raises(SRSError, match="hash"):
        srs.reverse(forged, NOW)
    old = srs.forward("alice@orig.example", NOW)
    with pytest.raises(SRSError, match="expired"):
        srs.reverse(old, NOW + 22 * DAY)
    assert srs.reverse(old, NOW + 21 * DAY) == "alice@orig.example"


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError):
        SRS(b"", "fwd.example")
