"""makemap text maps, class files and access relays read as sendmail read them (§2.2, §2.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.directory.legacy.findings import Finding
from daisymail.directory.legacy.maps import (
    parse_access_relays,
    parse_class_file,
    parse_makemap_text,
    write_class_file,
    write_makemap_text,
)
from daisymail.directory.model import RelayRule
from tests.spec_data import LOCAL_HOST_NAMES


def test_finding_str() -> None:
    f = Finding("virtusertable", 3, "error", "duplicate key x")
    assert str(f) == "virtusertable:3: error: duplicate key x"


# -- §5.1 makemap vectors ---------------------------------------------------------------


def test_m1_key_lowercased_value_verbatim() -> None:
    m = parse_makemap_text(b"Key1 value one  with  spaces\n", "m")
    assert m.entries == {"key1": "value one  with  spaces"}
    assert m.findings == []


def test_m2_leading_space_skipped_others_kept() -> None:
    m = parse_makemap_text(b"a@x.test one\n  leading@space.test x\nb@x.test two\n", "m")
    assert m.entries == {"a@x.test": "one", "b@x.test": "two"}
    assert [(f.line, f.severity) for f in m.findings] == [(2, "error")]
    assert "leading space" in m.findings[0].message


def test_m3_first_duplicate_wins() -> None:
    m = parse_makemap_text(b"dup@x.test first\nDUP@x.test second\n", "m")
    assert m.entries == {"dup@x.test": "first"}
    assert len(m.findings) == 1
    assert m.findings[0].line == 2
    assert "duplicate key" in m.findings[0].message


def test_m4_no_rhs() -> None:
    m = parse_makemap_text(b"norhs@x.test\nnorhs2@x.test   \nnorhs3@x.test\t\r\n", "m")
    assert m.entries == {}
    assert [f.line for f in m.findings] == [1, 2, 3]
    assert all("no RHS" in f.message for f in m.findings)


def test_m5_hash_inside_line_is_literal() -> None:
    m = parse_makemap_text(b"inline@x.test val # not a comment\n# a comment\n\n", "m")
    assert m.entries == {"inline@x.test": "val # not a comment"}
    assert m.findings == []


def test_values_keep_trailing_space_and_cr() -> None:
    m = parse_makemap_text(b"a@x  tab\tand space \r\nb@x\tv\r\n", "m")
    assert m.entries == {"a@x": "tab\tand space \r", "b@x": "v\r"}


def test_only_ascii_is_case_folded_and_bytes_survive() -> None:
    data = "Ünï@X.test Wert\n".encode() + b"k\xff@x v\xfe\n"
    m = parse_makemap_text(data, "m")
    assert list(m.entries) == ["Ünï@x.test", "k\udcff@x"]
    assert write_makemap_text(m.entries) == "Ünï@x.test\tWert\n".encode() + b"k\xff@x\tv\xfe\n"


def test_unterminated_last_line_is_read() -> None:
    assert parse_makemap_text(b"a@x one\nb@x two", "m").entries == {"a@x": "one", "b@x": "two"}


def test_line_length_limit() -> None:
    ok = b"k " + b"v" * 1020  # 1022 bytes + newline fits fgets' 1024-byte buffer
    long = b"l " + b"v" * 1021
    m = parse_makemap_text(ok + b"\n" + long + b"\n", "m")
    assert list(m.entries) == ["k"]
    assert m.findings[0].line == 2
    assert "too long" in m.findings[0].message


def test_nul_byte_line_rejected() -> None:
    m = parse_makemap_text(b"a@x v\x00w\nb@x ok\n", "m")
    assert m.entries == {"b@x": "ok"}
    assert m.findings[0].line == 1


@pytest.mark.parametrize(
    "entries",
    [{"Upper": "v"}, {"a b": "v"}, {"#c": "v"}, {"k": ""}, {"k": " v"}, {"k": "a\nb"}, {"": "v"}],
)
def test_write_refuses_what_cannot_round_trip(entries: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        write_makemap_text(entries)


_key = st.text(
    st.characters(blacklist_categories=("Cs", "Lu", "Lt"), blacklist_characters=" \t\n\v\f\r\0"),
    min_size=1,
    max_size=30,
).filter(lambda k: not k.startswith("#") and k.lower() == k)
_value = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\0"),
    min_size=1,
    max_size=40,
).filter(lambda v: v[0] not in " \t\v\f\r")


@given(st.dictionaries(_key, _value, max_size=10))
def test_makemap_round_trip(entries: dict[str, str]) -> None:
    m = parse_makemap_text(write_makemap_text(entries), "m")
    assert m.entries == entries
    assert m.findings == []


# -- §5.2 class files -------------------------------------------------------------------


def test_c1_first_word_only() -> None:
    names, findings = parse_class_file(LOCAL_HOST_NAMES, "local-host-names")
    assert names == [
        "mail.hosting.test",
        "acme.com",
        "Example.ORG",
        "bar.net",
        "spaced.test",
        "case.test",
    ]
    assert "baz.net" not in names
    assert [(f.line, f.severity) for f in findings] == [(5, "warning")]
    assert "baz.net" in findings[0].message


def test_class_file_comments_blank_lines_crlf() -> None:
    data = b"\n  \nacme.com # trailing comment\r\n  # indented\n\tb.test\r\n#x.test\n"
    names, findings = parse_class_file(data, "relay-domains")
    assert names == ["acme.com", "b.test"]
    assert [f.line for f in findings] == [4]


@given(
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
            min_size=1,
            max_size=20,
        ).filter(lambda n: not n.startswith("#") and n.split() == [n]),
        max_size=10,
    )
)
def test_class_file_round_trip(names: list[str]) -> None:
    assert parse_class_file(write_class_file(names), "f") == (names, [])


@pytest.mark.parametrize("name", ["", "#x", "a b", "a\n"])
def test_write_class_file_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        write_class_file([name])


# -- access relays (§5.5) --------------------------------------------------------------


def test_access_relay_entries() -> None:
    data = (
        b"Connect:10.1.2 RELAY\n"
        b"To:partner.example RELAY\n"
        b"To:Partner.Example relay\n"
        b"Connect:IPv6:2001:db8:: RELAY\n"
        b"192.168.7 RELAY\r\n"
        b"friend.test RELAY\n"
        b"Connect:spammer.test REJECT\n"
        b"From:a@b.test OK\n"
        b"From:c@b.test RELAY\n"
        b"Connect:host.test RELAY\n"
        b"To:300.1 RELAY\n"
        b"Spam:x.test FRIEND\n"
    )
    rules, findings = parse_access_relays(data, "access")
    assert rules == [
        RelayRule("10.1.2.0/24", "network"),
        RelayRule("partner.example", "domain"),
        RelayRule("2001:db8::/32", "network"),
        RelayRule("192.168.7.0/24", "network"),
        RelayRule("friend.test", "domain"),
    ]
    assert [(f.line, f.severity) for f in findings] == [
        (3, "error"),  # duplicate key after case folding
        (7, "info"),
        (8, "info"),
        (9, "info"),
        (10, "info"),
        (11, "info"),
        (12, "info"),
    ]
    assert all("not imported" in f.message for f in findings[1:])
