import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.sasl import (
    Challenge,
    Credentials,
    LoginExchange,
    PlainExchange,
    SaslCancelled,
    SaslError,
    decode_base64,
    decode_plain,
    new_exchange,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"\0tim\0tanstaaftanstaaf", ("", "tim", "tanstaaftanstaaf")),
        (b"Ursel\0Kurt\0xipj3plmq", ("Ursel", "Kurt", "xipj3plmq")),
        (b"\0j\xc3\xbcrgen@example.org\0p\xc3\xa4ss word", ("", "jürgen@example.org", "päss word")),
        (b"\0u\0p=", ("", "u", "p=")),
    ],
)
def test_decode_plain(message: bytes, expected: tuple[str, str, str]) -> None:
    assert decode_plain(b64(message)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty message
        "not base64!",
        "AHUAcA",  # missing padding
        "AHUAcA== ",  # trailing space
        " AHUAcA==",
        "AHUA\ncA==",
        "AHUAcA===",
        b64(b"\0user"),  # one NUL only
        b64(b"a\0b\0c\0d"),  # three NULs
        b64(b"\0\0pass"),  # empty authcid
        b64(b"\0user\0"),  # empty password
        b64(b"\0us\xffer\0pass"),  # not UTF-8
    ],
)
def test_decode_plain_rejects(text: str) -> None:
    with pytest.raises(SaslError):
        decode_plain(text)


def test_decode_base64_is_canonical_only() -> None:
    assert decode_base64("") == b""
    assert decode_base64("YQ==") == b"a"
    for bad in ("YQ", "YQ=", "Y Q==", "YQ==YQ==", "*"):
        with pytest.raises(SaslError):
            decode_base64(bad)


def test_plain_with_initial_response() -> None:
    result = PlainExchange().start(b64(b"\0alice\0secret"))
    assert result == Credentials("", "alice", "secret")


def test_plain_without_initial_response_asks_with_empty_challenge() -> None:
    exchange = PlainExchange()
    assert exchange.start(None) == Challenge("")
    assert exchange.respond(b64(b"admin\0alice\0secret")) == Credentials("admin", "alice", "secret")


def test_plain_empty_initial_response_is_an_error() -> None:
    with pytest.raises(SaslError):
        PlainExchange().start("=")


def test_login_full_exchange() -> None:
    exchange = LoginExchange()
    assert exchange.start(None) == Challenge("VXNlcm5hbWU6")
    assert exchange.respond(b64(b"alice@example.org")) == Challenge("UGFzc3dvcmQ6")
    assert exchange.respond(b64(b"s3cret")) == Credentials("", "alice@example.org", "s3cret")


def test_login_with_initial_response_skips_the_username_challenge() -> None:
    exchange = LoginExchange()
    assert exchange.start(b64(b"bob")) == Challenge("UGFzc3dvcmQ6")
    assert exchange.respond(b64(b"")) == Credentials("", "bob", "")


def test_login_empty_username_is_an_error() -> None:
    with pytest.raises(SaslError):
        LoginExchange().start("=")
    exchange = LoginExchange()
    exchange.start(None)
    with pytest.raises(SaslError):
        exchange.respond("")


@pytest.mark.parametrize("exchange", [PlainExchange(), LoginExchange()])
def test_star_cancels(exchange: PlainExchange | LoginExchange) -> None:
    exchange.start(None)
    with pytest.raises(SaslCancelled):
        exchange.respond("*")


def test_login_rejects_bad_base64_password() -> None:
    exchange = LoginExchange()
    exchange.start(b64(b"bob"))
    with pytest.raises(SaslError):
        exchange.respond("%%%")


def test_new_exchange() -> None:
    assert isinstance(new_exchange("plain"), PlainExchange)
    assert isinstance(new_exchange("LOGIN"), LoginExchange)
    assert new_exchange("CRAM-MD5") is None


NO_NUL = st.characters(codec="utf-8", exclude_characters="\0")


@given(
    st.text(NO_NUL, max_size=40),
    st.text(NO_NUL, min_size=1, max_size=40),
    st.text(NO_NUL, min_size=1, max_size=40),
)
def test_plain_round_trip(authzid: str, authcid: str, password: str) -> None:
    parts = (authzid, authcid, password)
    message = b"\0".join(part.encode("utf-8") for part in parts)
    assert decode_plain(b64(message)) == parts


@given(st.text(st.characters(codec="utf-8"), max_size=60))
def test_decode_plain_raises_only_sasl_error(text: str) -> None:
    try:
        decode_plain(text)
    except SaslError:
        pass
