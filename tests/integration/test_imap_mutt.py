"""neomutt (or mutt) in tmux against the real server: read, flag, move and delete a
message, each checked on the server side over IMAP."""

from __future__ import annotations

import imaplib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Daisy, require_tool
from tests.integration.imap_support import imap, send, start_server

DEADLINE = 20.0  # seconds for any one step: bounded, however loaded the machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("imapmutt") / "daisy"))
    yield d
    d.stop()


def _mutt() -> str:
    path = shutil.which("neomutt") or shutil.which("mutt")
    return path or require_tool("neomutt")


class Tmux:
    def __init__(self, tmux: str, name: str) -> None:
        self.tmux, self.name = tmux, name

    def run(self, *args: str) -> str:
        res = subprocess.run(
            [self.tmux, *args], capture_output=True, text=True, timeout=10, check=True
        )
        return res.stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", self.name, "-l", text)

    def limit(self, subject: str) -> None:
        """Show only the message with this subject (every subject here starts "mutt ")."""
        self.keys("l")
        self.wait_for("Limit to messages matching")
        self.type(f"~s '{subject}'")
        self.keys("Enter")
        self.wait_for(subject, only=True)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def wait_for(self, text: str, only: bool = False) -> str:
        until = time.monotonic() + DEADLINE
        while time.monotonic() < until:
            screen = self.screen()
            if text in screen and (not only or screen.count("mutt ") == 1):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared:\n{self.screen()}")


def _poll(check: Callable[[], bool], what: str, screen: Callable[[], str] = str) -> None:
    until = time.monotonic() + DEADLINE
    while time.monotonic() < until:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"the server never saw: {what}\n{screen()}")


def _flags(daisy: Daisy, folder: str, subject: str) -> set[str] | None:
    """The flags of the message with this subject in a folder, None if it is not there."""
    m = imap(daisy)
    try:
        m.select(folder, readonly=True)
        _, data = m.search(None, "SUBJECT", f'"{subject}"', "UNDELETED")
        found = (data[0] or b"").split()
        if not found:
            return None
        _, data = m.fetch(found[0], "(FLAGS)")
        return {f.decode() for f in imaplib.ParseFlags(data[0])}
    finally:
        m.logout()


def test_read_flag_move_delete(server: Daisy, tmp_path: Path) -> None:
    mutt = _mutt()
    tmux = require_tool("tmux")
    for n in ("one", "two", "three"):
        send(server, "demo@example.test", f"mutt {n}", f"body of {n}")
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set folder="imap://127.0.0.1:{server.ports["imap"]}/"\n'
        'set imap_user="demo@example.test"\nset imap_pass="demo-pw"\n'
        'set spoolfile="+INBOX"\nset record=""\nset postponed="+Drafts"\n'
        'set ssl_starttls=no\nset ssl_force_tls=no\nset imap_authenticators="login"\n'
        'set header_cache=""\nset message_cachedir=""\nset mail_check=1\nset timeout=1\n'
        "set delete=yes\nset move=no\nset mark_old=no\nset confirmappend=no\n"
        "set sort=date\nset wait_key=no\nset beep=no\n"
    )
    session = Tmux(tmux, f"daisy-mutt-{server.ports['imap']}")
    session.run(
        "new-session",
        "-d",
        "-s",
        session.name,
        "-x",
        "160",
        "-y",
        "40",
        f"TERM=xterm HOME={tmp_path} {mutt} -n -F {rc}",
    )
    try:
        session.wait_for("mutt three")

        # Read "mutt one": its body shows (mutt writes \Seen back at the next sync).
        session.limit("mutt one")
        session.keys("Enter")
        session.wait_for("body of one")
        session.keys("q")

        # Flag it, and write the changes back with $.
        session.keys("F", "$")
        _poll(lambda: _flags(server, "INBOX", "mutt one") == {"\\Seen", "\\Flagged"}, "flags")

        # Move "mutt two" to Archive (save marks it deleted here) and delete "mutt three";
        # one $ then writes both back (delete=yes: expunged without a question).
        session.limit("mutt two")
        session.keys("s")
        session.wait_for("Save to mailbox")
        session.keys("C-u")
        session.type("=Archive")
        session.keys("Enter")
        session.wait_for("Del:1")
        session.limit("mutt three")
        session.keys("d")
        session.wait_for("Del:2")
        session.keys("$")
        _poll(lambda: _flags(server, "Archive", "mutt two") is not None, "mutt two in Archive")
        _poll(lambda: _flags(server, "INBOX", "mutt two") is None, "mutt two gone from INBOX")
        _poll(
            lambda: _flags(server, "INBOX", "mutt three") is None,
            "mutt three deleted",
            session.screen,
        )

        assert _flags(server, "Archive", "mutt three") is None  # deleted, not moved
        assert _flags(server, "INBOX", "mutt one") == {"\\Seen", "\\Flagged"}
        session.keys("q")
    finally:
        subprocess.run([tmux, "kill-session", "-t", session.name], capture_output=True, timeout=10)
