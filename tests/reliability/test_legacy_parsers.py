"""Property tests of every legacy file parser on arbitrary bytes: no exceptions, and
what comes out keeps the invariants the importer relies on."""

from __future__ import annotations

import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st

from daisymail.directory.legacy.maps import (
    parse_access_relays,
    parse_class_file,
    parse_makemap_text,
)
from daisymail.directory.legacy.teapop import (
    Entry,
    mailbox_path,
    parse_password_file,
    parse_teapop_passwd,
)
from tests.reliability.conftest import scale

EXAMPLES = scale(300, 5000)

# Bytes that look like the files: printable text, separators, comments, odd line ends.
_pieces = st.sampled_from(
    [
        b"a",
        b"Z",
        b"@",
        b".",
        b":",
        b"#",
        b";",
        b" ",
        b"\t",
        b"\n",
        b"\r\n",
        b"\r",
        b"\0",
        b"%",
        b"!",
        b"Connect:",
        b"To:",
        b"RELAY",
        b"OK",
        b"127.0.0",
        b"\xff",
        b"$6$",
        b"/",
    ]
)
filelike = st.one_of(st.binary(max_size=600), st.lists(_pieces, max_size=120).map(b"".join))


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + 1


@settings(max_examples=EXAMPLES)
@given(filelike)
def test_makemap_text(data: bytes) -> None:
    parsed = parse_makemap_text(data, "virtusertable")
    for key in parsed.entries:
        assert not any("A" <= c <= "Z" for c in key)
        assert key and not key.startswith("#")
        assert not any(c in key for c in " \t\n")
    assert all(1 <= f.line <= _line_count(data) for f in parsed.findings)


@settings(max_examples=EXAMPLES)
@given(filelike)
def test_class_file(data: bytes) -> None:
    names, findings = parse_class_file(data, "local-host-names")
    for name in names:
        assert name and not name.startswith("#") and name.split() == [name]
    assert all(1 <= f.line <= _line_count(data) for f in findings)


@settings(max_examples=EXAMPLES)
@given(filelike)
def test_access_relays(data: bytes) -> None:
    rules, findings = parse_access_relays(data, "access")
    assert len(rules) == len(set(rules))
    assert all(1 <= f.line <= _line_count(data) for f in findings)


@settings(max_examples=EXAMPLES)
@given(filelike, st.sampled_from(["textfile", "htpasswd"]), st.none() | st.integers(0, 5))
def test_teapop_files(data: bytes, method: str, max_accounts: int | None) -> None:
    entries, _ = parse_teapop_passwd(data, "teapop.passwd")
    assert len({e.domain for e in entries}) == len(entries)
    entry = Entry("acme.com", "*", method, "/S", 0, "nobody", "mail", "/p", max_accounts, 1)
    accounts, findings = parse_password_file(data, "pw", entry)
    if max_accounts is not None:
        assert len(accounts) <= max_accounts
    assert len({a.user for a in accounts}) == len(accounts)
    for account in accounts:
        assert account.path.startswith("/")
        assert account.maildir == account.path.endswith("/")
    assert all(1 <= f.line <= _line_count(data) for f in findings)


@settings(max_examples=EXAMPLES)
@given(
    st.sampled_from(["", "/S", "/var/spool/mail", "rel"]),
    st.integers(-2, 12),
    st.text(st.sampled_from("ab./~-\0é"), max_size=12),
)
def test_mailbox_path(base: str, depth: int, name: str) -> None:
    path, maildir = mailbox_path(base, depth, name)
    assert maildir == name.endswith("/")
    assert path.startswith("/")
    bare = path.rstrip("/") or "/"
    assert posixpath.normpath(bare) == bare
