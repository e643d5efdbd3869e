"""The CLI around IMAP: `mailbox convert --all`, `mailbox set --quota`, and what `check`
and `import legacy` say about mbox mailboxes; then IMAP and POP3 on the result."""

from __future__ import annotations

import imaplib
import json
from pathlib import Path

from tests.conftest import Daisy
from tests.integration.test_legacy_migration import import_args, virtualmail_tree
from tests.integration.test_mailbox_convert import B1_UIDLS, _uidls_and_sizes
from tests.integration.test_pop3_server import mbox_daisy

__all__ = ["mbox_daisy"]


def test_convert_all_to_maildir_then_imap_serves_it(mbox_daisy: Daisy) -> None:
    d = mbox_daisy
    d.cli("mailbox", "add", "second", "--format", "mbox")
    d.cli("mailbox", "add", "third", "--format", "maildir")
    check = d.cli("check", check=False).stdout
    assert "imap: jsmith: an mbox file" in check
    assert "daisymail mailbox convert jsmith --to maildir" in check
    assert "imap: second: an mbox file" in check
    assert "imap: third" not in check

    m = imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=10)
    try:
        m.login("john@acme.com", "j04n4CmE")
        raise AssertionError("an mbox mailbox was served over IMAP")
    except imaplib.IMAP4.error as e:
        assert "UNAVAILABLE" in str(e) and "mailbox convert jsmith --to maildir" in str(e)
    m.logout()

    res = d.cli("mailbox", "convert", "--all", "--to", "maildir")
    assert "mailbox jsmith: 2 messages converted to maildir" in res.stdout
    assert "2 mailboxes converted to maildir" in res.stdout
    boxes = json.loads(d.cli("mailbox", "list", "--json").stdout)
    assert {b["name"]: b["format"] for b in boxes} == {
        "jsmith": "maildir",
        "second": "maildir",
        "third": "maildir",
    }
    assert "imap: " not in d.cli("check", check=False).stdout
    assert _uidls_and_sizes(d)[0] == B1_UIDLS  # POP3 clients see the same UIDLs

    m = imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=10)
    m.login("john@acme.com", "j04n4CmE")
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    m.logout()
    again = d.cli("mailbox", "convert", "--all", "--to", "maildir")
    assert "every mailbox is maildir already" in again.stdout
    bad = d.cli("mailbox", "convert", "--to", "maildir", check=False)
    assert bad.returncode != 0 and "--all" in bad.stderr + bad.stdout


def test_import_legacy_names_the_mbox_mailboxes(daisy_dir: Daisy, tmp_path: Path) -> None:
    tree = virtualmail_tree(tmp_path / "legacy")
    out = daisy_dir.cli(*import_args(tree)).stdout
    assert "imap: johnacme: an mbox file" in out
    assert "daisymail mailbox convert --all --to maildir" in out


def test_mailbox_set_quota_and_overquota_over_imap(daisy_dir: Daisy) -> None:
    d = daisy_dir
    d.cli("domain", "add", "example.test")
    d.add_user("q@example.test", "q-pw")
    box = json.loads(d.cli("mailbox", "list", "--json").stdout)[0]["name"]
    assert "quota 20480 octets" in d.cli("mailbox", "set", box, "--quota", "20K").stdout
    bad = d.cli("mailbox", "set", box, "--quota", "lots", check=False)
    assert bad.returncode != 0 and "not a size" in bad.stderr + bad.stdout
    d.start()
    m = imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=10)
    m.login("q@example.test", "q-pw")
    assert b" QUOTA " in m.capability()[1][0]
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK"
    assert data[1][0].startswith(b'"" (STORAGE 0 20)')
    small = b"Subject: fits\r\n\r\n" + b"a" * 12_000 + b"\r\n"
    assert m.append("INBOX", None, None, small)[0] == "OK"
    typ, data = m.append("INBOX", None, None, small)
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    m.logout()
    d.cli("mailbox", "set", box, "--quota", "default")
    m = imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=10)
    m.login("q@example.test", "q-pw")
    assert m.append("INBOX", None, None, small)[0] == "OK"
    m.logout()
