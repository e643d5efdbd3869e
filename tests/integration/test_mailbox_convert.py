"""`daisymail mailbox convert` against the running server, with poplib and smtplib."""

from __future__ import annotations

import poplib
import time
from pathlib import Path

from tests.conftest import Daisy
from tests.integration.test_pop3_server import B1, mbox_daisy, pop, send

__all__ = ["mbox_daisy"]

B1_UIDLS = [b"1 a38f70afb6b3cbb4ae26a78cf7d849de", b"2 44076b8841d80e83098610a829cd01c3"]


def _login(daisy: Daisy) -> poplib.POP3:
    p = pop(daisy)
    p.user("john%acme.com")
    p.pass_("j04n4CmE")
    return p


def _uidls_and_sizes(daisy: Daisy) -> tuple[list[bytes], list[bytes]]:
    p = _login(daisy)
    try:
        return p.uidl()[1], p.list()[1]
    finally:
        p.quit()


def _record(daisy: Daisy) -> str:
    return daisy.cli("mailbox", "list", "jsmith").stdout.splitlines()[-1]


def test_convert_to_maildir_and_back_keeps_uidls(mbox_daisy: Daisy) -> None:
    spool = mbox_daisy.root / "spool-legacy"
    uidls, sizes = _uidls_and_sizes(mbox_daisy)
    assert uidls == B1_UIDLS

    out = mbox_daisy.cli("mailbox", "convert", "jsmith", "--to", "maildir").stdout
    assert "2 messages converted to maildir" in out
    assert "maildir" in _record(mbox_daisy)
    assert _uidls_and_sizes(mbox_daisy) == (uidls, sizes)
    kept = [p for p in spool.iterdir() if p.name.startswith("jsmith.converted-")]
    assert len(kept) == 1 and kept[0].read_bytes() == B1

    # delivery follows the switched record (the server re-reads the directory)
    send(mbox_daisy, "john@acme.com", "after conversion")
    maildir = spool / "jsmith.maildir"
    assert len(list((maildir / "new").iterdir())) == 3
    after, _ = _uidls_and_sizes(mbox_daisy)
    assert after[:2] == B1_UIDLS and len(after) == 3

    # back to mbox: the UIDLs survive through X-UIDL headers, once the server honours them
    mbox_daisy.stop()
    mbox_daisy.set_config("[pop3]", "use_x_uidl", "true")
    mbox_daisy.start()
    out = mbox_daisy.cli("mailbox", "convert", "jsmith", "--to", "mbox").stdout
    assert "3 messages converted to mbox" in out and "use_x_uidl = true" in out
    assert "it is false now" not in out
    assert _record(mbox_daisy).split()[1:3] == ["mbox", str(spool / "jsmith")]
    assert _uidls_and_sizes(mbox_daisy)[0] == after
    send(mbox_daisy, "john@acme.com", "into the mbox again")
    assert b"Subject: into the mbox again 0" in (spool / "jsmith").read_bytes()
    assert not maildir.exists()
    assert [p.is_dir() for p in spool.glob("jsmith.maildir.converted-*")] == [True]


def test_convert_refused_while_a_pop3_session_is_open(mbox_daisy: Daisy) -> None:
    p = _login(mbox_daisy)
    try:
        res = mbox_daisy.cli("mailbox", "convert", "jsmith", "--to", "maildir", check=False)
    finally:
        p.quit()
    assert res.returncode != 0
    assert "in use" in res.stderr and "nothing was changed" in res.stderr
    assert "mbox" in _record(mbox_daisy)
    assert (mbox_daisy.root / "spool-legacy" / "jsmith").read_bytes() == B1


def test_convert_to_the_same_format_is_an_error(mbox_daisy: Daisy) -> None:
    res = mbox_daisy.cli("mailbox", "convert", "jsmith", "--to", "mbox", check=False)
    assert res.returncode == 1
    assert "already mbox" in res.stderr
    res = mbox_daisy.cli("mailbox", "convert", "nobody", "--to", "mbox", check=False)
    assert res.returncode == 1 and "no such mailbox" in res.stderr


def test_warns_when_x_uidl_is_off(daisy: Daisy, tmp_path: Path) -> None:
    send(daisy, "demo@example.test", "hello")
    before, _ = _uidls_demo(daisy)
    out = daisy.cli("mailbox", "convert", "demo.example.test", "--to", "mbox").stdout
    assert "it is false now" in out
    time.sleep(1.1)
    after, _ = _uidls_demo(daisy)
    assert len(after) == 1 and after != before


def _uidls_demo(daisy: Daisy) -> tuple[list[bytes], list[bytes]]:
    p = pop(daisy)
    p.user("demo@example.test")
    p.pass_("demo-pw")
    try:
        return p.uidl()[1], p.list()[1]
    finally:
        p.quit()
