"""The legacy importer on fixture trees: plan, drift, idempotent apply, export round trip,
live re-reading, and bad input that must become findings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daisymail.directory.base import ReadOnly
from daisymail.directory.legacy.apply import apply_plan, plan_changes
from daisymail.directory.legacy.exporter import export_legacy
from daisymail.directory.legacy.importer import read_legacy
from daisymail.directory.legacy.live import LegacyDirectory
from daisymail.directory.legacy.sources import LegacyPaths
from daisymail.directory.model import Domain, Snapshot
from daisymail.directory.passwords import verify_password
from daisymail.directory.sql import SqlDirectory
from daisymail.logins import resolve_login
from daisymail.routing.addresses import parse_path
from daisymail.routing.recipients import Deliver, Forward, Reject, resolve_recipient
from daisymail.routing.senders import rewrite_sender
from tests.legacy_tree import LegacyTree, build_spec_tree


@pytest.fixture
def tree(tmp_path: Path) -> LegacyTree:
    return build_spec_tree(tmp_path / "legacy")


def login(snap: Snapshot, name: str, password: str) -> str | None:
    """The mailbox path a POP3 login reaches, or None when it fails."""
    account = resolve_login(snap, name)
    if account is None or not verify_password(account.password_hash, password):
        return None
    return snap.mailboxes[account.mailbox].path


def rcpt(snap: Snapshot, address: str) -> object:
    parsed = parse_path(f"<{address}>")
    assert parsed is not None
    return resolve_recipient(parsed, snap).decision


def test_spec_domains_and_routing(tree: LegacyTree) -> None:
    snap = read_legacy(tree.paths).snapshot()
    assert set(snap.domains) >= {
        "mail.hosting.test",
        "acme.com",
        "example.org",
        "bar.net",
        "spaced.test",
        "case.test",
    }
    assert "baz.net" not in snap.domains
    acme = snap.domains["acme.com"]
    assert acme == Domain("acme.com", True, True, True, "legacy")
    assert not snap.domains["example.org"].generics
    assert not snap.domains["legacy.test"].fallback
    spool = str(tree.spool)
    assert rcpt(snap, "John@ACME.Com") == Deliver("johnacme", None)
    assert snap.mailboxes["johnacme"].path == f"{spool}/johnacme"
    assert snap.mailboxes["johnacme"].format == "mbox"
    assert rcpt(snap, "info@acme.com") == Forward("jane@elsewhere.example")
    decision = rcpt(snap, "joe@acme.com")
    assert isinstance(decision, Reject) and decision.reply() == (
        "550 5.0.0 <joe@acme.com>... No such user here"
    )
    assert rcpt(snap, "sales+foo@acme.com") == Deliver("salesbox", "foo")
    assert rewrite_sender("johnacme", snap, "mail.hosting.test") == "john@acme.com"
    patterns = {(r.pattern, r.kind) for r in snap.relay_rules}
    assert patterns == {
        ("acme.com", "domain"),
        ("friend.example", "domain"),
        ("192.168.5.0/24", "network"),
        ("10.1.2.0/24", "network"),
        ("partner.example", "domain"),
    }


@pytest.mark.parametrize(
    ("name", "password", "box"),
    [
        ("john@acme.com", "j04n4CmE", "jsmith"),  # T1
        ("john%acme.com", "j04n4CmE", "jsmith"),  # T2
        ("john@ACME.COM", "j04n4CmE", "jsmith"),  # T3
        ("John@acme.com", "j04n4CmE", None),  # T3: user names are case-sensitive
        ("john@Example.org", "other", "exjohn"),  # T4
        ("mary@acme.com", "secret", "mary"),  # T5
        ("bob@acme.com", "pw", "bobbox"),  # T5
        ("afterblank@acme.com", "pw", "after"),  # T6: a trap, imported with a warning
        ("nonl@acme.com", "pw", "nonl"),  # T7: a trap, imported with a warning
        ("john@legacy.test", "legacypw", "legacyjohn"),  # T8: imported with a warning
        ("john@legacy3.test", "legacypw", "legacyjohn"),  # T8: max 0
        ("john@legacy4.test", "legacypw", "legacyjohn"),  # T9
        ("john@hashed.test", "pw", "j/jsmith"),  # T10
        ("u2@max.test", "pw", "u2"),  # T11
        ("u3@max.test", "pw", None),  # T11: over max
        ("plain", "pw", "plainbox"),  # T12
        ("plain@", "pw", "plainbox"),  # T12
        ("john@acme.com", "wrong", None),
        ("someone@nowhere.test", "pw", None),  # default: reject
    ],
)
def test_spec_teapop_logins(tree: LegacyTree, name: str, password: str, box: str | None) -> None:
    snap = read_legacy(tree.paths).snapshot()
    expected = None if box is None else f"{tree.spool}/{box}"
    assert login(snap, name, password) == expected


def test_findings_cover_traps_and_drift(tree: LegacyTree) -> None:
    findings = [str(f) for f in read_legacy(tree.paths).findings]
    text = "\n".join(findings)
    assert f"{tree.etc}/acme.com.passwd:6: warning: blank line" in text
    assert f"{tree.etc}/acme.com.passwd:8: warning: last line has no newline" in text
    assert f"{tree.etc}/teapop.passwd:3: warning: no max field" in text
    assert f"{tree.etc}/teapop.passwd:9: warning: empty max field" in text
    assert "drift: @acme.com delivers to" in text  # target mailbox without a login
    assert "drift: login john@hashed.test reads" in text  # nothing delivers there
    assert "drift: mail to john@acme.com goes to" in text  # address and login differ
    assert "local-host-names:5: warning: only the first word" in text


def test_default_entry_logins_use_the_pseudo_domain(tmp_path: Path) -> None:
    tree = LegacyTree(tmp_path)
    tree.write("etc/mail/local-host-names", b"acme.com\n")
    tree.teapop("acme.com:*:reject\ndefault:*:textfile:S:0:u:g:E/d.passwd:5:\n")
    tree.password_file("d.passwd", b"joe:pw:joebox\n")
    snap = read_legacy(tree.paths).snapshot()
    assert login(snap, "joe@acme.com", "pw") is None  # acme.com's own entry decides
    assert login(snap, "joe@other.test", "pw") == f"{tree.spool}/joebox"


def test_sendmail_cw_and_both_class_files(tmp_path: Path) -> None:
    tree = LegacyTree(tmp_path)
    tree.write("etc/sendmail.cw", b"old.test\r\n")
    plan = read_legacy(tree.paths)
    assert list(plan.domains) == ["old.test"]
    tree.write("etc/mail/local-host-names", b"new.test\n")
    plan = read_legacy(tree.paths)
    assert list(plan.domains) == ["new.test"]
    assert any("both" in f.message for f in plan.findings)


def test_bad_input_becomes_findings(tmp_path: Path) -> None:
    tree = LegacyTree(tmp_path)
    tree.write("etc/mail/local-host-names", b"acme.com\n\x00\xff\xfe junk\nnot_a..domain\n")
    tree.write("etc/mail/virtusertable", b"\x00bin\n" + b"k@acme.com " + b"v" * 2000 + b"\n")
    os.symlink(tmp_path / "nowhere", tree.mail / "genericstable")
    (tree.mail / "relay-domains").mkdir()
    os.symlink(tree.mail / "local-host-names", tree.mail / "access")
    tree.teapop("acme.com:*:textfile:S:0:u:g:E/missing.passwd:5:\n")
    unreadable = tree.write("etc/mail/sendmail.cG", b"acme.com\n")
    unreadable.chmod(0)
    plan = read_legacy(tree.paths)
    text = "\n".join(str(f) for f in plan.findings)
    assert list(plan.domains) == ["acme.com"]
    assert "symbolic link to a file that does not exist" in text
    assert "is a directory" in text or "not a regular file" in text
    assert "missing.passwd:0: error: file not found" in text
    assert "line too long" in text
    if os.geteuid() != 0:
        assert "sendmail.cG:0: error: cannot read" in text


def test_nothing_there_is_an_empty_plan(tmp_path: Path) -> None:
    plan = read_legacy(LegacyPaths(str(tmp_path / "mail"), str(tmp_path / "tp"), "/s"))
    assert plan.empty and plan.findings


def sql(tmp_path: Path, name: str = "d.db") -> SqlDirectory:
    return SqlDirectory(f"sqlite:///{tmp_path / name}", create=True)


def test_apply_is_idempotent_and_keeps_hashes(tree: LegacyTree, tmp_path: Path) -> None:
    d = sql(tmp_path)
    plan = read_legacy(tree.paths)
    assert len(apply_plan(plan, d)) > 50
    first = d.refresh()
    john = first.find_login("john", "acme.com")
    assert john is not None and john.password_hash.startswith("$argon2id$")
    assert verify_password(john.password_hash, "j04n4CmE")
    assert apply_plan(read_legacy(tree.paths), d) == []
    assert d.refresh() == first  # not even rehashed
    tree.password_file("acme.com.passwd", b"john:newpw:jsmith\n")
    changes = apply_plan(read_legacy(tree.paths), d)
    assert [str(c) for c in changes] == ["update login john@acme.com (password)"]
    john = d.refresh().find_login("john", "acme.com")
    assert john is not None and verify_password(john.password_hash, "newpw")
    d.close()


def test_dry_run_changes_nothing(tree: LegacyTree, tmp_path: Path) -> None:
    d = sql(tmp_path)
    changes = plan_changes(read_legacy(tree.paths), d.snapshot())
    assert changes and d.refresh() == Snapshot()
    d.close()


def test_export_round_trip(tree: LegacyTree, tmp_path: Path) -> None:
    first = sql(tmp_path, "a.db")
    apply_plan(read_legacy(tree.paths), first)
    snap = first.refresh()
    out = tmp_path / "out"
    warnings = export_legacy(snap, str(out), mail_dir=str(tmp_path / "mail"))
    assert any("argon2id" in w for w in warnings)
    again = LegacyPaths(str(out), str(out / "teapop.passwd"), str(tree.spool))
    second = sql(tmp_path, "b.db")
    apply_plan(read_legacy(again), second)
    assert second.refresh() == snap
    assert apply_plan(read_legacy(again), first) == []
    first.close()
    second.close()


def test_export_writes_plain_secrets_back(tmp_path: Path) -> None:
    from daisymail.directory.model import Login, Mailbox

    snap = Snapshot(
        domains={"a.test": Domain("a.test", fallback=True)},
        mailboxes={"box": Mailbox("box", "maildir", "")},
        logins=(Login("u", "a.test", "{PLAIN}secret", "box"),),
    )
    assert export_legacy(snap, str(tmp_path), mail_dir="/m") == []
    assert (tmp_path / "a.test.passwd").read_bytes() == b"u:secret:/m/box/\n"
    assert (tmp_path / "local-host-names").read_bytes() == b"a.test\n"


def test_live_directory_rereads_changed_files(tree: LegacyTree) -> None:
    now = [0.0]
    live = LegacyDirectory(tree.paths, clock=lambda: now[0])
    assert rcpt(live.snapshot(), "john@acme.com") == Deliver("johnacme", None)
    assert login(live.snapshot(), "john@acme.com", "j04n4CmE") == f"{tree.spool}/jsmith"
    data = (tree.mail / "virtusertable").read_bytes().replace(b"\tjohnacme", b"\tcatchall")
    tree.write("etc/mail/virtusertable", data)
    assert rcpt(live.snapshot(), "john@acme.com") == Deliver("johnacme", None)  # not yet
    now[0] = 1.5
    assert rcpt(live.snapshot(), "john@acme.com") == Deliver("catchall", None)
    tree.password_file("example.org.passwd", b"john:changed:exjohn\n")
    now[0] = 3.0
    assert login(live.snapshot(), "john@example.org", "changed") == f"{tree.spool}/exjohn"
    with pytest.raises(ReadOnly, match="legacy files"):
        live.add_domain(Domain("x.test"))
