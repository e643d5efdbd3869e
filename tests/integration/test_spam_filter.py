"""Port 25 with [filter] rspamd_url: a real rspamd started here, real SMTP and IMAP clients.

rspamd runs with a minimal config of its own (no modules, no Redis, no DNS): GTUBE is
built into rspamd, and a one-rule Lua prefilter lets a message ask for any other action
by its Subject (``rspamd-action=greylist``), so every mapping is exercised against the
real daemon and its real HTTP protocol.
"""

from __future__ import annotations

import imaplib
import os
import smtplib
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daisy, free_port, require_tool
from tests.integration.test_smtp_server import maildir_messages, smtp, wait_for

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
START_TIMEOUT = 180  # rspamd compiles its Lua at start: slow on a busy machine

RULES = """
rspamd_config:register_symbol({
  name = 'DAISY_TEST_ACTION',
  type = 'prefilter',
  callback = function(task)
    local s = task:get_subject() or ''
    local a = s:match('rspamd%-action=([%a ]+)$')
    if a then task:set_pre_result(a, 'test says ' .. a) end
  end,
})
"""

CONFIG = """
options {{
  pidfile = "{d}/rspamd.pid";
  dbdir = "{d}";
  tempdir = "{d}";
  filters = "";
  disable_hyperscan = true;
  dns {{ nameserver = ["127.0.0.1:1"]; timeout = 1s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "{d}/rspamd.log"; level = "warning"; }}
actions {{ reject = 15; add_header = 6; greylist = 4; }}
worker "normal" {{ bind_socket = "127.0.0.1:{port}"; count = 1; }}
lua = "{d}/rules.lua";
"""


def _start_rspamd(d: Path) -> tuple[subprocess.Popen[bytes], str]:
    rspamd = require_tool("rspamd")
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (d / "rules.lua").write_text(RULES)
    (d / "rspamd.conf").write_text(CONFIG.format(d=d, port=port))
    cmd = [rspamd, "-f", "-i", "-c", str(d / "rspamd.conf")]
    if os.geteuid() == 0:
        cmd[1:1] = ["-u", "root", "-g", "root"]
    out = open(d / "stdout", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_rspamd(proc: subprocess.Popen[bytes], url: str, d: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"rspamd exited: {(d / 'stdout').read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("rspamd did not answer in time")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def filtered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    """One Daisy with rspamd in front, shared: each test sends to its own recipient."""
    base = tmp_path_factory.mktemp("spam")
    proc, url = _start_rspamd(base / "rspamd")
    daisy = Daisy(base / "daisy")
    try:
        daisy.init()
        daisy.set_config("[filter]", "rspamd_url", f'"{url}"')
        daisy.set_config("[filter]", "timeout", "20.0")
        daisy.set_config("[relay]", "networks", '["127.0.0.5/32"]')
        daisy.cli("domain", "add", "example.test")
        for user in ("clean", "gtube", "junk", "soft", "grey", "trusted"):
            daisy.add_user(f"{user}@example.test", "pw-" + user)
        _wait_rspamd(proc, url, base / "rspamd")
        daisy.start()
        yield daisy
    finally:
        daisy.stop()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def message(subject: str, body: bytes = b"Hello there.") -> bytes:
    return (
        (
            f"From: Alice <alice@sender.test>\r\nTo: someone@example.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{time.time_ns()}@sender.test>\r\n\r\n"
        ).encode()
        + body
        + b"\r\n"
    )


def send(daisy: Daisy, rcpt: str, msg: bytes, source: str = "127.0.0.2") -> None:
    with smtp(daisy, source=source) as s:
        s.ehlo("client.sender.test")
        s.sendmail("alice@sender.test", [rcpt], msg)


def junk_messages(daisy: Daisy, box: str) -> list[bytes]:
    new = daisy.root / "mail" / box / ".Junk" / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


def test_gtube_is_refused_with_554(filtered: Daisy) -> None:
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(filtered, "gtube@example.test", message("GTUBE", GTUBE))
    assert e.value.smtp_code == 554
    assert e.value.smtp_error == b"5.7.1 Gtube pattern"
    assert maildir_messages(filtered, "gtube.example.test") == []
    assert junk_messages(filtered, "gtube.example.test") == []
    assert "smtp.filter " in filtered.logs() and "rspamd=reject" in filtered.logs()


def test_clean_message_is_accepted_and_marked_checked(filtered: Daisy) -> None:
    forged = "lunch?\r\nX-Spam-Flag: NO\r\nX-Spam-Status: No, forged\r\nX-Spam-Other: kept"
    send(filtered, "clean@example.test", message(forged))
    (stored,) = maildir_messages(filtered, "clean.example.test")
    head = stored.split(b"\n\n", 1)[0]
    assert b"\nX-Spam-Status: No, score=0.00 required=15.00 action='no action'\n" in head
    assert b"X-Spam-Flag" not in head and b"forged" not in head  # only Daisy's own
    assert b"X-Spam-Other: kept" in head
    assert junk_messages(filtered, "clean.example.test") == []


def test_add_header_files_into_junk_and_imap_shows_it(filtered: Daisy) -> None:
    send(filtered, "junk@example.test", message("cheap rspamd-action=add header"))
    assert maildir_messages(filtered, "junk.example.test") == []
    (stored,) = junk_messages(filtered, "junk.example.test")
    head = stored.split(b"\n\n", 1)[0]
    assert b"\nX-Spam-Flag: YES\nX-Spam-Status: Yes, score=" in head
    assert b"action='add header'" in head
    box = filtered.root / "mail" / "junk.example.test" / ".Junk"
    assert (box / "maildirfolder").exists()
    with imaplib.IMAP4("127.0.0.1", filtered.ports["imap"], timeout=10) as imap:
        imap.login("junk@example.test", "pw-junk")
        typ, data = imap.select("Junk", readonly=True)
        assert typ == "OK" and data == [b"1"]
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (X-SPAM-FLAG)])")
        assert typ == "OK" and b"X-Spam-Flag: YES" in data[0][1]  # type: ignore[index]
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK" and data == [b"0"]


@pytest.mark.parametrize(
    ("user", "action", "text"),
    [
        ("soft", "soft reject", b"4.7.1 test says soft reject"),
        ("grey", "greylist", b"4.7.1 test says greylist"),
    ],
)
def test_soft_reject_and_greylist_answer_451(
    filtered: Daisy, user: str, action: str, text: bytes
) -> None:
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(filtered, f"{user}@example.test", message(f"x rspamd-action={action}"))
    assert (e.value.smtp_code, e.value.smtp_error) == (451, text)
    assert maildir_messages(filtered, f"{user}.example.test") == []


def test_trusted_network_is_not_filtered(filtered: Daisy) -> None:
    send(filtered, "trusted@example.test", message("GTUBE", GTUBE), source="127.0.0.5")
    (stored,) = maildir_messages(filtered, "trusted.example.test")
    assert b"X-Spam" not in stored


def _silent_server() -> tuple[socket.socket, int]:
    """Accepts connections and never answers: a hung filter."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=loop, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_filter_down_or_hung_accepts_and_marks(daisy: Daisy) -> None:
    """rspamd refusing connections, then not answering: the message is kept, marked."""
    daisy.stop()
    closed = free_port()
    daisy.set_config("[filter]", "rspamd_url", f'"http://127.0.0.1:{closed}"')
    daisy.set_config("[filter]", "timeout", "1.0")
    daisy.set_config("[relay]", "networks", "[]")
    daisy.start()
    send(daisy, "demo@example.test", message("one"))
    (first,) = maildir_messages(daisy, "demo.example.test")
    assert b"\nX-Spam-Status: Unchecked (rspamd: cannot connect: " in first
    assert "smtp.filter.unavailable" in daisy.logs()

    srv, port = _silent_server()
    try:
        daisy.stop()
        daisy.set_config("[filter]", "rspamd_url", f'"http://127.0.0.1:{port}"')
        daisy.start()
        started = time.monotonic()
        send(daisy, "demo@example.test", message("two"))
        assert time.monotonic() - started < 8
    finally:
        srv.close()
    wait_for(lambda: len(maildir_messages(daisy, "demo.example.test")) == 2)
    second = next(m for m in maildir_messages(daisy, "demo.example.test") if m != first)
    assert b"\nX-Spam-Status: Unchecked (rspamd: timeout)\n" in second
