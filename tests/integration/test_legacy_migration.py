"""From sendmail + teapop to Daisy on the real CLI and server: import, SMTP into the legacy
mbox, POP3 with teapop's login names and UIDLs, re-import, export, and live mode."""

from __future__ import annotations

import json
import poplib
import smtplib
import time
from pathlib import Path

import pytest

from tests.conftest import Daisy
from tests.legacy_tree import LegacyTree

# SPEC §5.8 B1: the mbox teapop served, and the UIDLs it gave.
B1 = (
    b"From sender@example.com  Thu Nov 26 09:56:38 2026\nSubject: one\nFrom: a@example.com\n\n"
    b"body line\n>From here is a line\n.dot line\n\n"
    b"From other@example.com  Mon Jan  5 10:00:00 2004\n"
    b"Subject: two\nStatus: RO\nX-UIDL: abc123\n\nline1\nline2\nline3\n\n"
)
B1_UIDLS = [b"1 a38f70afb6b3cbb4ae26a78cf7d849de", b"2 44076b8841d80e83098610a829cd01c3"]


def virtualmail_tree(root: Path) -> LegacyTree:
    """The setup of teapop's contrib/virtualmail.html, with the B1 mbox as john's mail."""
    tree = LegacyTree(root)
    tree.spool.mkdir(parents=True)
    tree.write("etc/mail/local-host-names", b"acme.com\n")
    tree.write("etc/mail/virtusertable", b"john@acme.com\tjohnacme\nsales@acme.com\tjohnacme\n")
    tree.write("etc/mail/genericstable", b"johnacme\tjohn@acme.com\n")
    tree.write("etc/sendmail.cG", b"acme.com\n")
    tree.write("etc/mail/relay-domains", b"acme.com\n")
    tree.teapop("acme.com:*:textfile::0:johnacme:mail:E/acme.com.passwd:10:\n")
    tree.password_file("acme.com.passwd", b"john:j04n4CmE:S/johnacme\n")
    (tree.spool / "johnacme").write_bytes(B1)
    return tree


def import_args(tree: LegacyTree) -> list[str]:
    return [
        "import",
        "legacy",
        "--sendmail-dir",
        str(tree.mail),
        "--teapop-passwd",
        str(tree.etc / "teapop.passwd"),
        "--spool-dir",
        str(tree.spool),
    ]


def test_import_then_smtp_and_pop3_keep_teapop_uidls(daisy_dir: Daisy, tmp_path: Path) -> None:
    tree = virtualmail_tree(tmp_path / "legacy")
    dry = daisy_dir.cli(*import_args(tree), "--dry-run")
    assert "would: add login john@acme.com" in dry.stdout
    assert "dry run: nothing changed" in dry.stdout
    first = daisy_dir.cli(*import_args(tree), "--json")
    report = json.loads(first.stdout)
    assert report["applied"] and report["findings"] == []
    assert {"action": "add", "kind": "mailbox", "name": "johnacme", "detail": ""} | {
        "detail": f"mbox {tree.spool}/johnacme"
    } in report["changes"]
    again = daisy_dir.cli(*import_args(tree))
    assert "nothing to change" in again.stdout
    resolved = daisy_dir.cli("resolve", "John@ACME.com")
    assert "johnacme" in resolved.stdout

    daisy_dir.start()
    with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as s:
        s.sendmail("s@example.net", ["sales@acme.com"], b"Subject: new\r\n\r\nhello\r\n")
    data = (tree.spool / "johnacme").read_bytes()
    assert data.startswith(B1) and b"Subject: new\nhello" not in data and b"hello\n" in data

    pop = poplib.POP3("127.0.0.1", daisy_dir.ports["pop3"], timeout=10)
    try:
        pop.user("john%acme.com")
        pop.pass_("j04n4CmE")
        assert pop.stat()[0] == 3
        uidls = pop.uidl()[1]
        assert uidls[:2] == B1_UIDLS
        assert b"Subject: new" in b"\n".join(pop.retr(3)[1])
    finally:
        pop.quit()


def test_strict_and_nothing_importable_exit_non_zero(daisy_dir: Daisy, tmp_path: Path) -> None:
    tree = virtualmail_tree(tmp_path / "legacy")
    tree.write("etc/mail/virtusertable", b"john@acme.com\tjohnacme\n  indented x\n")
    res = daisy_dir.cli(*import_args(tree), "--strict", check=False)
    assert res.returncode == 1
    assert "virtusertable:2: error: syntax error (leading space)" in res.stdout
    assert "nothing to change" not in res.stdout
    assert daisy_dir.cli("domain", "list", "--json").stdout.strip() in ("[]", "")
    empty = tmp_path / "none"
    res = daisy_dir.cli(
        "import",
        "legacy",
        "--sendmail-dir",
        str(empty),
        "--teapop-passwd",
        str(empty / "tp"),
        check=False,
    )
    assert res.returncode == 1 and "nothing could be imported" in res.stderr


def test_export_round_trip_on_the_cli(daisy_dir: Daisy, tmp_path: Path) -> None:
    tree = virtualmail_tree(tmp_path / "legacy")
    daisy_dir.cli(*import_args(tree))
    out = tmp_path / "out"
    res = daisy_dir.cli("export", "legacy", "--out", str(out))
    assert "argon2id" in res.stdout
    assert (out / "virtusertable").read_bytes() == (
        b"john@acme.com\tjohnacme\nsales@acme.com\tjohnacme\n"
    )
    back = LegacyTree(out)
    args = [
        "import",
        "legacy",
        "--sendmail-dir",
        str(back.root),
        "--teapop-passwd",
        str(out / "teapop.passwd"),
        "--spool-dir",
        str(tree.spool),
    ]
    assert "nothing to change" in daisy_dir.cli(*args).stdout


@pytest.fixture
def live(daisy_dir: Daisy, tmp_path: Path) -> tuple[Daisy, LegacyTree]:
    tree = virtualmail_tree(tmp_path / "legacy")
    daisy_dir.set_config("[directory]", "backend", '"legacy"')
    daisy_dir.set_config("[directory.legacy]", "sendmail_dir", f'"{tree.mail}"')
    daisy_dir.set_config("[directory.legacy]", "teapop_passwd", f'"{tree.etc / "teapop.passwd"}"')
    daisy_dir.start()
    return daisy_dir, tree


def rcpt_reply(d: Daisy, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=10) as s:
        s.ehlo()
        s.mail("s@example.net")
        return s.rcpt(address)


def rcpt_code(d: Daisy, address: str) -> int:
    return rcpt_reply(d, address)[0]


def test_live_mode_follows_virtusertable_edits(live: tuple[Daisy, LegacyTree]) -> None:
    d, tree = live
    assert rcpt_code(d, "john@acme.com") == 250
    assert rcpt_code(d, "new@acme.com") == 550  # no such mailbox at acme.com
    tree.write(
        "etc/mail/virtusertable",
        b"john@acme.com\tjohnacme\nnew@acme.com\terror:5.1.1:550 gone\n",
    )
    deadline = time.monotonic() + 5
    while True:
        code, text = rcpt_reply(d, "new@acme.com")
        if b"gone" in text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (code, text) == (550, b"5.1.1 <new@acme.com>... gone")
    res = d.cli("domain", "add", "x.test", check=False)
    assert res.returncode != 0 and "legacy files" in res.stderr
