"""RFC 5321 path parsing: what is accepted, how it is normalised and which reply a bad
path gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.routing.addresses import Address, AddressError, parse_path, split_detail


@pytest.mark.parametrize(
    ("arg", "local", "domain"),
    [
        ("<user@dom.test>", "user", "dom.test"),
        ("<John@ACME.Com>", "John", "acme.com"),
        ("<john@acme.com.>", "john", "acme.com"),
        ("user@dom.test", "user", "dom.test"),
        ("  <user@dom.test>  ", "user", "dom.test"),
        ("<@a.test,@b.test:u@d.test>", "u", "d.test"),
        ("<@relay.test:u@d.test>", "u", "d.test"),
        ('<"quoted local"@acme.com>', '"quoted local"', "acme.com"),
        ('<"a@b\\"c"@acme.com>', '"a@b\\"c"', "acme.com"),
        ("<postmaster>", "postmaster", ""),
        ("<u@[192.0.2.1]>", "u", "[192.0.2.1]"),
        ("<u@[IPv6:2001:DB8::1]>", "u", "[ipv6:2001:db8::1]"),
        ("<first..last@x.test>", "first..last", "x.test"),
        ("<x%remote.test@acme.com>", "x%remote.test", "acme.com"),
        ("<a!b@acme.com>", "a!b", "acme.com"),
        ("<sales+foo@acme.com>", "sales+foo", "acme.com"),
        ("<u@under_score.test>", "u", "under_score.test"),
    ],
)
def test_accepted_paths(arg: str, local: str, domain: str) -> None:
    assert parse_path(arg) == Address(local, domain)


def test_null_path() -> None:
    assert parse_path("<>") is None


def test_str() -> None:
    assert str(Address("John", "acme.com")) == "John@acme.com"
    assert str(Address("postmaster", "")) == "postmaster"


@pytest.mark.parametrize(
    "arg",
    [
        "",
        "<",
        "<user@dom.test",
        "user@dom.test>",
        "<user@dom.test\r>",
        "<user@dom\n.test>",
        "<us\x00er@dom.test>",
        "<user@>",
        "<@dom.test>",
        "<@a.test:>",
        "<@a.test,b.test:u@d.test>",
        "<user@dom..test>",
        "<user@dom.test@x>",
        "<us er@dom.test>",
        "<us(er@dom.test>",
        '<"unterminated@dom.test>',
        '<"q"x@dom.test>',
        "<u@[300.1.2.3]>",
        "<u@[192.0.2.1>",
        "<u@[mail.test]>",
        "<u@dom.test:25>",
    ],
)
def test_syntax_errors_are_501(arg: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_path(arg)
    assert (info.value.code, info.value.enhanced) == (501, "5.1.3")


def test_non_ascii_needs_smtputf8() -> None:
    with pytest.raises(AddressError) as info:
        parse_path("<jörg@bücher.test>")
    assert (info.value.code, info.value.enhanced) == (553, "5.6.7")
    assert parse_path("<Jörg@Bücher.test>", smtputf8=True) == Address("Jörg", "bücher.test")


def test_length_limits() -> None:
    assert parse_path(f"<{'a' * 64}@x.test>") == Address("a" * 64, "x.test")
    with pytest.raises(AddressError) as info:
        parse_path(f"<{'a' * 65}@x.test>")
    assert (info.value.code, info.value.enhanced) == (553, "5.1.3")
    domain = ".".join(["d" * 63] * 3) + "." + "e" * 60  # 252 octets
    assert parse_path(f"<u@{domain}>") == Address("u", domain)  # 256 with the brackets
    with pytest.raises(AddressError) as info:
        parse_path(f"<uu@{domain}>")
    assert (info.value.code, info.value.text) == (501, "Path too long")
    with pytest.raises(AddressError) as info:
        parse_path(f"<u@{'d' * 64}.test>")
    assert info.value.code == 501


def test_error_carries_reply_parts() -> None:
    err = AddressError(501, "5.1.3", "Bad")
    assert isinstance(err, ValueError)
    assert str(err) == "501 5.1.3 Bad"


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("john", ("john", None)),
        ("john+x", ("john", "x")),
        ("sales+", ("sales", "")),
        ("bob++x", ("bob", "+x")),
        ("a+b+c", ("a", "b+c")),
        ('"a+b"', ('"a+b"', None)),
    ],
)
def test_split_detail(local: str, expected: tuple[str, str | None]) -> None:
    assert split_detail(local) == expected


_atom = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789!#$%&'*+-/=?^_`{|}~"),
    min_size=1,
    max_size=20,
)
_label = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-"), min_size=1, max_size=10)


@given(
    st.lists(_atom, min_size=1, max_size=3).map(".".join),
    st.lists(_label, min_size=1, max_size=4).map(".".join),
)
def test_valid_addresses_round_trip(local: str, domain: str) -> None:
    parsed = parse_path(f"<{local}@{domain.upper()}>")
    assert parsed == Address(local, domain)
    assert parse_path(f"<{parsed}>") == parsed


@given(st.text(max_size=300))
def test_never_crashes_and_only_raises_address_error(arg: str) -> None:
    try:
        result = parse_path(arg, smtputf8=True)
    except AddressError as err:
        assert err.code in (501, 553)
    else:
        assert result is None or "\r" not in str(result)


def test_one_character_names_are_addresses() -> None:
    assert parse_path("a") == Address("a", "")
    assert parse_path("<a>") == Address("a", "")
    assert parse_path("<a@b>") == Address("a", "b")
