"""Mailbox conversion on real files and a real SQLite directory: UIDLs, locks, crashes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from daisymail.directory.model import AddressRule, Domain, Login, Mailbox
from daisymail.directory.sql import SqlDirectory
from daisymail.store import convert, maildir, maildir_write
from daisymail.store.base import Delivery, MailboxInUse, MaildropView, ViewOptions
from daisymail.store.convert import ConversionError, convert_mailbox
from daisymail.store.files import FileStore
from daisymail.store.locking import MboxLock

# SPEC §5.8 B1: teapop's UIDLs are the MD5s below, or abc123 with X-UIDL honoured.
B1 = (
    b"From sender@example.com  Thu Nov 26 09:56:38 2026\nSubject: one\nFrom: a@example.com\n\n"
    b"body line\n>From here is a line\n.dot line\n\n"
    b"From other@example.com  Mon Jan  5 10:00:00 2004\n"
    b"Subject: two\nStatus: RO\nX-UIDL: abc123\n\nline1\nline2\nline3\n\n"
)
B1_MD5 = ["a38f70afb6b3cbb4ae26a78cf7d849de", "44076b8841d80e83098610a829cd01c3"]
PLAIN = ViewOptions()
X_UIDL = ViewOptions(use_x_uidl=True)


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.mail = root / "mail"
        self.mail.mkdir()
        self.store = FileStore(str(self.mail))
        self.directory = SqlDirectory(f"sqlite:///{root / 'd.db'}", create=True, refresh_interval=0)
        self.directory.add_domain(Domain("acme.com"))

    def add(self, box: Mailbox) -> None:
        self.directory.add_mailbox(box)
        self.directory.add_login(Login("john", "acme.com", "hash-kept", box.name))
        self.directory.add_address_rule(AddressRule("john@acme.com", box.name))
        self.directory.add_address_rule(AddressRule("sales+*@acme.com", f"{box.name}+%2"))

    def box(self, name: str = "jsmith") -> Mailbox:
        return self.directory.snapshot().mailboxes[name]

    def view(self, name: str = "jsmith", options: ViewOptions = PLAIN) -> MaildropView:
        return self.store.open_view(self.box(name), options)

    def seen(self, name: str = "jsmith", options: ViewOptions = PLAIN) -> list[tuple[str, int]]:
        view = self.view(name, options)
        try:
            return [(m.uidl, m.size) for m in view.messages]
        finally:
            view.close()

    def bodies(self, name: str = "jsmith", options: ViewOptions = PLAIN) -> list[bytes]:
        view = self.view(name, options)
        try:
            return [b"".join(view.lines(i)) for i in range(len(view.messages))]
        finally:
            view.close()

    def convert(
        self, to: str, options: ViewOptions = PLAIN, **kw: object
    ) -> convert.ConversionResult:
        return convert_mailbox(
            self.directory,
            self.store,
            "jsmith",
            to,
            options,
            settle=0,
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.directory.close()


@pytest.fixture
def b1(env: Env) -> Path:
    box = env.root / "spool" / "jsmith"
    box.parent.mkdir()
    box.write_bytes(B1)
    env.add(Mailbox("jsmith", "mbox", str(box)))
    return box


@pytest.mark.parametrize(("options", "uidls"), [(PLAIN, B1_MD5), (X_UIDL, [B1_MD5[0], "abc123"])])
def test_mbox_to_maildir_keeps_uidls_sizes_and_bodies(
    env: Env, b1: Path, options: ViewOptions, uidls: list[str]
) -> None:
    before = env.seen(options=options)
    bodies = env.bodies(options=options)
    assert [u for u, _ in before] == uidls
    res = env.convert("maildir", options)
    assert res.messages == 2 and res.late == 0 and res.skipped_bytes == 0
    box = env.box()
    assert (box.format, box.path) == ("maildir", f"{b1}.maildir/")
    assert env.seen(options=options) == before  # UIDLs and sizes, in the same order
    assert env.bodies(options=options) == bodies
    # the old mbox is renamed aside, byte for byte, never deleted
    assert not b1.exists()
    assert Path(res.kept_as).read_bytes() == B1
    assert res.kept_as.startswith(f"{b1}.converted-")
    # logins and address rules still reach the mailbox, hashes untouched
    snap = env.directory.snapshot()
    assert snap.find_login("john", "acme.com") == Login("john", "acme.com", "hash-kept", "jsmith")
    assert snap.address_rules["sales+*@acme.com"] == "jsmith+%2"


def test_converted_maildir_orders_by_mbox_order_and_keeps_dates(env: Env, b1: Path) -> None:
    # B1's first message is dated 2026, the second 2004: order must stay the mbox order
    env.convert("maildir")
    view = env.view()
    try:
        received = [m.received for m in view.messages]
        assert view.messages[0].uidl == B1_MD5[0]
    finally:
        view.close()
    assert received[0] is not None and received[1] is not None
    assert received[0] <= received[1]


def test_new_mail_after_conversion_gets_maildir_uidls(env: Env, b1: Path, tmp_path: Path) -> None:
    env.convert("maildir")
    src = tmp_path / "msg"
    src.write_bytes(b"Subject: new\n\nhi\n")
    env.store.deliver([env.box()], Delivery(str(src), b"Return-Path: <a@b>\n", "a@b"))
    uidls = [u for u, _ in env.seen()]
    assert uidls[:2] == B1_MD5
    assert len(uidls) == 3 and uidls[2] not in B1_MD5


def test_round_trip_back_to_mbox_keeps_uidls_with_x_uidl(env: Env, b1: Path) -> None:
    before = env.seen()
    env.convert("maildir")
    res = env.convert("mbox")
    box = env.box()
    assert (box.format, box.path) == ("mbox", str(b1))  # back at the original place
    assert [u for u, _ in env.seen(options=X_UIDL)] == [u for u, _ in before]
    # each message grew by its X-UIDL header (CRLF counted): "sizes may change slightly"
    for (_, old), (_, new) in zip(before, env.seen(options=X_UIDL), strict=True):
        assert new == old + len("X-UIDL: ") + 32 + 2
    data = b1.read_bytes()
    assert data.startswith(b"From MAILER-DAEMON  ")
    assert b"\n>From here is a line\n" in data  # the kept escape, not escaped again
    assert res.uidls_lost == 0


def test_maildir_to_mbox_from_line_and_escaping(env: Env, tmp_path: Path) -> None:
    env.add(Mailbox("jsmith", "maildir"))
    src = tmp_path / "m"
    src.write_bytes(b"Subject: x\n\nFrom the top\nbody\n")
    env.store.deliver([env.box()], Delivery(str(src), b"Return-Path: <s@ex.net>\n", "s@ex.net"))
    ((uidl, _),) = env.seen()
    res = env.convert("mbox")
    assert env.box().path == "jsmith.mbox"
    data = (env.mail / "jsmith.mbox").read_bytes()
    first, rest = data.split(b"\n", 1)
    assert first.startswith(b"From s@ex.net  ")
    assert rest == (
        f"X-UIDL: {uidl}\n".encode()
        + b"Return-Path: <s@ex.net>\nSubject: x\n\n>From the top\nbody\n\n"
    )
    assert [u for u, _ in env.seen(options=X_UIDL)] == [uidl]
    assert os.path.isdir(res.kept_as)
    assert res.kept_as.startswith(str(env.mail / "jsmith.converted-"))
    assert not (env.mail / "jsmith").exists()


def test_tmp_files_are_ignored_and_flags_dropped(env: Env, tmp_path: Path) -> None:
    env.add(Mailbox("jsmith", "maildir"))
    root = env.mail / "jsmith"
    maildir.ensure_maildir(str(root))
    (root / "tmp" / "123.partial").write_bytes(b"Subject: half\n")
    (root / "cur" / "1700000000.abc.host:2,S").write_bytes(b"Subject: seen\n\nx\n")
    res = env.convert("mbox")
    assert res.messages == 1
    data = (env.mail / "jsmith.mbox").read_bytes()
    assert b"Subject: seen" in data and b"half" not in data
    assert [u for u, _ in env.seen(options=X_UIDL)] == ["1700000000.abc.host"]


def test_long_maildir_uidls_are_reported(env: Env) -> None:
    env.add(Mailbox("jsmith", "maildir"))
    root = env.mail / "jsmith"
    maildir.ensure_maildir(str(root))
    long_name = "1700000000." + "x" * 55  # a valid UIDL of 66 characters
    (root / "new" / long_name).write_bytes(b"Subject: a\n\nx\n")
    res = env.convert("mbox")
    assert res.uidls_lost == 1
    assert b"X-UIDL" not in (env.mail / "jsmith.mbox").read_bytes()


def test_refused_while_a_pop3_session_is_open(env: Env, b1: Path) -> None:
    view = env.view()
    try:
        with pytest.raises(MailboxInUse):
            env.convert("maildir")
    finally:
        view.close()
    assert env.box().format == "mbox" and b1.read_bytes() == B1
    assert not Path(f"{b1}.maildir").exists()


def test_refused_while_a_maildir_session_is_open(env: Env) -> None:
    env.add(Mailbox("jsmith", "maildir"))
    view = env.view()
    try:
        with pytest.raises(MailboxInUse):
            env.convert("mbox")
    finally:
        view.close()
    assert env.box().format == "maildir"
    assert not (env.mail / "jsmith.mbox").exists()


def test_refused_while_a_delivery_holds_the_mbox_lock(env: Env, b1: Path) -> None:
    with MboxLock(str(b1), None, wait=0), pytest.raises(MailboxInUse):
        env.convert("maildir", lock_wait=0.1)
    assert env.box().format == "mbox"


def test_same_format_is_an_error(env: Env, b1: Path) -> None:
    with pytest.raises(ConversionError, match="already mbox"):
        env.convert("mbox")
    env.convert("maildir")
    with pytest.raises(ConversionError, match="already maildir"):
        env.convert("maildir")


def test_unknown_mailbox_and_taken_target(env: Env, b1: Path) -> None:
    with pytest.raises(ConversionError, match="no such mailbox"):
        convert_mailbox(env.directory, env.store, "nobody", "maildir", PLAIN, settle=0)
    Path(f"{b1}.maildir").mkdir()
    with pytest.raises(ConversionError, match="already exists"):
        env.convert("maildir", path=f"{b1}.maildir")
    with pytest.raises(ConversionError, match="bad path"):
        env.convert("maildir", path="/")
    assert b1.read_bytes() == B1


def test_mbox_path_cannot_end_in_a_slash(env: Env) -> None:
    env.add(Mailbox("jsmith", "maildir"))
    with pytest.raises(ConversionError, match="cannot end in"):
        env.convert("mbox", path="x/")


def test_crash_mid_way_leaves_old_mailbox_and_record(
    env: Env, b1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = maildir_write.add_message
    calls = []

    def failing(*args: object, **kw: object) -> str:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(maildir_write, "add_message", failing)
    before = env.box()
    with pytest.raises(OSError, match="No space"):
        env.convert("maildir")
    assert env.box() == before
    assert b1.read_bytes() == B1
    # nothing but the mbox and the POP3 session lock file: no copy, staging or dotlock left
    assert {p.name for p in b1.parent.iterdir()} == {"jsmith", ".jsmith.daisymail-pop3"}
    # the session lock is free again: POP3 and a new conversion work
    assert [u for u, _ in env.seen()] == B1_MD5
    monkeypatch.setattr(maildir_write, "add_message", real)
    env.convert("maildir")
    assert [u for u, _ in env.seen()] == B1_MD5


def test_failed_switch_removes_the_new_copy(
    env: Env, b1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("directory down")

    monkeypatch.setattr(env.directory, "update_mailbox", broken)
    with pytest.raises(RuntimeError):
        env.convert("maildir")
    monkeypatch.undo()
    assert env.box() == Mailbox("jsmith", "mbox", str(b1))
    assert env.directory.snapshot().find_login("john", "acme.com") is not None
    assert b1.read_bytes() == B1
    assert not Path(f"{b1}.maildir").exists()


def test_leftover_staging_from_a_killed_run_is_replaced(env: Env, b1: Path) -> None:
    staging = Path(f"{b1}.maildir{convert.STAGING_SUFFIX}")
    (staging / "new").mkdir(parents=True)
    (staging / "new" / "junk").write_bytes(b"half a message")
    env.convert("maildir")
    assert not staging.exists()
    assert [u for u, _ in env.seen()] == B1_MD5


def test_mail_delivered_during_the_settle_is_carried_over(
    env: Env, b1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that read the old record appends to the old mbox after the switch."""
    src = tmp_path / "late"
    src.write_bytes(b"Subject: late\n\nhello\n")
    old = env.box()

    def deliver_late(seconds: float) -> None:
        env.store.deliver([old], Delivery(str(src), b"", "late@x"))

    monkeypatch.setattr(convert.time, "sleep", deliver_late)
    res = env.convert("maildir")
    assert res.late == 1
    bodies = env.bodies()
    assert len(bodies) == 3 and bodies[2] == b"Subject: late\n\nhello\n\n"
    assert [u for u, _ in env.seen()][:2] == B1_MD5


def test_maildir_mail_delivered_during_the_settle_is_carried_over(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.add(Mailbox("jsmith", "maildir"))
    old = env.box()
    src = tmp_path / "m"
    src.write_bytes(b"Subject: first\n\nx\n")
    env.store.deliver([old], Delivery(str(src), b"", "a@b"))

    def deliver_late(seconds: float) -> None:
        src.write_bytes(b"Subject: late\n\ny\n")
        env.store.deliver([old], Delivery(str(src), b"", "a@b"))

    monkeypatch.setattr(convert.time, "sleep", deliver_late)
    res = env.convert("mbox")
    assert (res.messages, res.late) == (1, 1)
    bodies = env.bodies()
    assert [b.split(b"\n")[1] for b in bodies] == [b"Subject: first", b"Subject: late"]


def test_uidlist_entries_are_pruned_on_delete(env: Env, b1: Path) -> None:
    env.convert("maildir")
    root = env.store.resolve_path(env.box())
    assert len(maildir.read_uidlist(root)) == 2
    view = env.view()
    view.commit({0})
    view.close()
    assert list(maildir.read_uidlist(root).values()) == [B1_MD5[1]]
    assert [u for u, _ in env.seen()] == [B1_MD5[1]]


def test_uidlist_round_trips_odd_values(tmp_path: Path) -> None:
    entries = {"1.M1P1Q1.h": "abc\r", "2.x": "with space", "3.y": "\xe9t\xe9"}
    maildir.write_uidlist(str(tmp_path), entries)
    assert maildir.read_uidlist(str(tmp_path)) == entries
    maildir.write_uidlist(str(tmp_path), {})
    assert not (tmp_path / maildir.UIDLIST_NAME).exists()


def test_prelude_and_trailing_junk_are_reported(env: Env) -> None:
    box = env.root / "jsmith"
    box.write_bytes(b"junk before\n" + B1 + b"no newline")
    env.add(Mailbox("jsmith", "mbox", str(box)))
    before = env.seen()
    res = env.convert("maildir")
    assert res.skipped_bytes == len(b"junk before\n") + len(b"no newline")
    assert env.seen() == before


def test_missing_mbox_converts_to_an_empty_maildir(env: Env) -> None:
    env.add(Mailbox("jsmith", "mbox"))
    res = env.convert("maildir")
    assert (res.messages, res.kept_as, res.warnings) == (0, "", [])
    assert env.box() == Mailbox("jsmith", "maildir", "jsmith.maildir/")
    assert env.seen() == []
