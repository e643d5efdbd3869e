"""teapop.passwd and per-domain password files (SPEC §1.2, §1.5–§1.7, vectors §5.7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daisymail.directory.legacy.teapop import (
    Entry,
    mailbox_path,
    parse_password_file,
    parse_teapop_passwd,
)


def entry(**kw: object) -> Entry:
    base: dict[str, object] = {
        "domain": "acme.com",
        "ip": "*",
        "method": "textfile",
        "maildir": "/S",
        "hash": 0,
        "uid": "nobody",
        "gid": "mail",
        "pwfile": "/etc/x",
        "max_accounts": 10,
        "line": 1,
    }
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def test_spec_teapop_passwd_entries() -> None:
    data = (
        b"acme.com:*:textfile:/S:0:nobody:mail:/etc/acme.com.passwd:10:\n"
        b"Example.ORG:*:textfile:/S:0:nobody:mail:/etc/example.org.passwd:10:   ; trailing\n"
        b"legacy.test:*:textfile::0:nobody:mail:/etc/legacy.passwd\n"
        b"hashed.test:*:TextFile:/S:1:nobody:mail:/etc/hashed.passwd:10:\n"
        b"default:*:reject\n"
        b"legacy2.test:*:textfile::0:nobody:mail:/etc/legacy.passwd:\n"
        b"legacy3.test:*:textfile::0:nobody:mail:/etc/legacy.passwd::\n"
        b"legacy4.test:*:textfile::0:nobody:mail:/etc/legacy.passwd:5:\n"
        b"zero.test:*:textfile::0:nobody:mail:/etc/legacy.passwd:0:\n"
    )
    entries, findings = parse_teapop_passwd(data, "tp")
    by = {e.domain: e for e in entries}
    assert list(by) == [
        "acme.com",
        "example.org",
        "legacy.test",
        "hashed.test",
        "default",
        "legacy2.test",
        "legacy3.test",
        "legacy4.test",
        "zero.test",
    ]
    assert by["acme.com"].maildir == "/S" and by["acme.com"].max_accounts == 10
    assert by["example.org"].pwfile == "/etc/example.org.passwd"
    assert by["hashed.test"].method == "textfile" and by["hashed.test"].hash == 1
    assert by["default"].method == "reject"
    assert by["legacy4.test"].max_accounts == 5
    for name in ("legacy.test", "legacy2.test", "legacy3.test", "zero.test"):
        assert by[name].max_accounts is None
    traps = {f.line: f for f in findings}
    assert "ignored this entry" in traps[3].message and traps[3].severity == "warning"
    assert "ignored this entry" in traps[6].message
    assert "nobody log in" in traps[7].message
    assert "nobody log in" in traps[9].message
    assert 4 not in traps and 1 not in traps


@pytest.mark.parametrize(
    ("data", "severity", "text"),
    [
        (b"a.test:*:bogus:x:\n", "error", "unknown method"),
        (b"a.test:*\n", "error", "corrupt"),
        (b"a.test:*:textfile:/S:0:\n", "error", "no password file"),
        (b"a.test:*:passwd:/var/mail\n", "error", "missing fields"),
        (b"a.test:*:passwd:/var/mail:0:\n", "info", "system accounts"),
        (b"a.test:*:mysql:/S:0:u:g:h:p:db:u:p:t:uc:pc:mc:\n", "info", "MySQL"),
        (b"a.test:10.0.0.1:reject\n", "info", "connections to 10.0.0.1"),
        (b"a.test:*:textfile:/S:0:u:g:/p:1:" + b"x" * 600 + b"\n", "error", "longer than"),
        (b"a.test:*:textfile:/S:0:u:g:/p:3:", "warning", "no newline"),
    ],
)
def test_teapop_passwd_findings(data: bytes, severity: str, text: str) -> None:
    _, findings = parse_teapop_passwd(data, "tp")
    assert any(f.severity == severity and text in f.message for f in findings), findings


def test_teapop_passwd_comments_duplicates_and_hash_atoi() -> None:
    data = (
        b"# whole line\n  \t\n; also\n"
        b"  a.test:*:textfile:/S:2x:u:g:/p#x:7: \n"
        b"A.TEST:*:textfile:/T:0:u:g:/q:7:\n"
        b"b.test:*:textfile:/S:999:u:g:/p:3:\n"
    )
    entries, findings = parse_teapop_passwd(data, "tp")
    # "#x:7:" is cut as a comment, so /p has no max field after it.
    assert [(e.domain, e.hash, e.pwfile, e.max_accounts) for e in entries] == [
        ("a.test", 2, "/p", None),
        ("b.test", 999, "/p", 3),
    ]
    assert any(f.line == 5 and "second entry" in f.message for f in findings)


def test_spec_acme_password_file_traps() -> None:
    data = (
        b"john:j04n4CmE:jsmith\n# comment\n;comment2\n  mary:secret:mary\nbob:pw:bobbox\n"
        b"\nafterblank:pw:after\nnonl:pw:nonl"
    )
    accounts, findings = parse_password_file(data, "acme", entry())
    assert [(a.user, a.secret, a.path) for a in accounts] == [
        ("john", "j04n4CmE", "/S/jsmith"),
        ("mary", "secret", "/S/mary"),
        ("bob", "pw", "/S/bobbox"),
        ("afterblank", "pw", "/S/after"),
        ("nonl", "pw", "/S/nonl"),
    ]
    messages = [(f.line, f.severity, f.message) for f in findings]
    assert any(line == 6 and "blank line" in m for line, _, m in messages)
    assert any(line == 8 and "no newline" in m for line, _, m in messages)
    assert any("afterblank, nonl" in m for _, _, m in messages)


def test_max_keeps_first_accounts_counting_blank_lines() -> None:
    accounts, findings = parse_password_file(
        b"u1:pw:u1\n#c\nu2:pw:u2\nu3:pw:u3\n", "max", entry(max_accounts=2)
    )
    assert [a.user for a in accounts] == ["u1", "u2"]
    assert findings[0].line == 4 and "max 2" in findings[0].message


def test_crlf_mailbox_loses_the_cr_with_one_warning() -> None:
    accounts, findings = parse_password_file(b"a:pw:abox\r\nb:pw:bbox\r\n", "f", entry())
    assert [a.path for a in accounts] == ["/S/abox", "/S/bbox"]
    assert [a.secret for a in accounts] == ["pw", "pw"]
    assert len([f for f in findings if "CRLF" in f.message]) == 1


def test_mailbox_keeps_colons_and_tabs_in_password_lines() -> None:
    accounts, _ = parse_password_file(b"\tu:p w:box:with:colons\n", "f", entry())
    assert accounts[0].user == "u" and accounts[0].secret == "p w"
    assert accounts[0].path == "/S/box:with:colons"


def test_duplicates_and_bad_users() -> None:
    accounts, findings = parse_password_file(
        b"u:one:box\nu:two:box\nu:one:box\nx@y:pw:b\nshort:only\n", "f", entry()
    )
    assert [(a.user, a.secret) for a in accounts] == [("u", "one")]
    severities = {f.line: f.severity for f in findings}
    assert severities[2] == "warning"  # another password: teapop accepted either
    assert severities[3] == "info"
    assert severities[4] == "error"
    assert severities[5] == "error"


def test_hash_looking_textfile_password_is_kept_as_hash() -> None:
    accounts, findings = parse_password_file(b"u:$1$salt$abc:box\n", "f", entry())
    assert accounts[0].hashed
    assert "stored hash" in findings[0].message


def test_htpasswd_mailbox_is_named_after_the_user() -> None:
    accounts, _ = parse_password_file(
        b"jdoe:$apr1$x$y:ignored\n", "f", entry(method="htpasswd", hash=2)
    )
    assert accounts[0].path == "/S/j/d/jdoe" and accounts[0].hashed


@pytest.mark.parametrize(
    ("base", "depth", "name", "path", "maildir"),
    [
        ("/var/mail", 1, "jsmith", "/var/mail/j/jsmith", False),
        ("/var/mail", 3, "ab", "/var/mail/a/b/ab", False),
        ("/var/mail", 511, "jsmith", "/var/mail/jsmith", False),
        ("/var/spool/mail", 0, "johnacme", "/var/spool/mail/johnacme", False),
        ("", 0, "/var/spool/mail/johnacme", "/var/spool/mail/johnacme", False),
        ("/chroot", 0, "/var/spool/mail/x", "/chroot/var/spool/mail/x", False),
        ("/S", 0, "Maildir/", "/S/Maildir/", True),
        ("", 0, "relative", "/relative", False),
    ],
)
def test_mailbox_path(base: str, depth: int, name: str, path: str, maildir: bool) -> None:
    assert mailbox_path(base, depth, name) == (path, maildir)


@given(st.binary(max_size=400))
def test_parsers_never_crash(data: bytes) -> None:
    parse_teapop_passwd(data, "tp")
    parse_password_file(data, "pw", entry())
    parse_password_file(data, "pw", entry(method="htpasswd", max_accounts=None))


@pytest.mark.parametrize(
    "line",
    [b"..:pw:..\n", b".:pw:.\n", b"u:pw:../../etc/passwd\n", b"u:pw:a/../..\n", b"u:pw:./\n"],
)
def test_mailbox_names_that_climb_out_of_the_spool_are_refused(line: bytes) -> None:
    accounts, findings = parse_password_file(b"ok:pw:okbox\n" + line, "f", entry())
    assert [a.user for a in accounts] == ["ok"]
    assert [(f.line, f.severity) for f in findings] == [(2, "error")]
    assert "spool directory" in findings[0].message


def test_absolute_and_dotted_mailbox_names_stay_allowed() -> None:
    accounts, findings = parse_password_file(
        b"a:pw:/var/mail/a\nb:pw:...\nc:pw:x/../c\n", "f", entry()
    )
    assert [a.user for a in accounts] == ["a", "b", "c"]
    assert not [f for f in findings if f.severity == "error"]


def test_an_htpasswd_user_named_dot_dot_gets_no_mailbox_at_the_spool_root() -> None:
    accounts, findings = parse_password_file(b"..:x\n", "f", entry(method="htpasswd"))
    assert accounts == [] and "spool directory" in findings[0].message
