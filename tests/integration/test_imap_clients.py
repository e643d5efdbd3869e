"""IMAP with other clients and from other places: curl, a non-loopback address, raw bytes,
an mbox mailbox, and two sessions on one folder."""

from __future__ import annotations

import imaplib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daisy, require_tool
from tests.integration.imap_support import imap, send, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("imapc") / "daisy"))
    yield d
    d.stop()


def _raw(daisy: Daisy, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(
        ("127.0.0.1", daisy.ports["imap"]), timeout=10, source_address=(source, 0)
    )
    return s


def _until(s: socket.socket, pattern: bytes) -> bytes:
    data = b""
    while not re.search(pattern, data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_curl_lists_folders_and_fetches(server: Daisy) -> None:
    curl = require_tool("curl")
    send(server, "demo@example.test", "for curl", "curl body")
    base = f"imap://127.0.0.1:{server.ports['imap']}/"
    res = subprocess.run(
        [curl, "-s", "--user", "demo@example.test:demo-pw", base],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    for name in ("INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"):
        assert f'"{name}"' in res.stdout
    res = subprocess.run(
        [curl, "-s", "--user", "demo%example.test:demo-pw", base + "INBOX;UID=1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    assert "Subject: for curl" in res.stdout and "curl body" in res.stdout


def test_curl_over_imaps(server: Daisy) -> None:
    curl = require_tool("curl")
    res = subprocess.run(
        [
            curl,
            "-s",
            "-k",
            "--user",
            "demo@example.test:demo-pw",
            f"imaps://127.0.0.1:{server.ports['imaps']}/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    assert '"Archive"' in res.stdout


def test_no_plaintext_login_from_other_addresses(server: Daisy) -> None:
    s = _raw(server, source="127.0.0.2")
    greeting = _until(s, b"\r\n")
    assert b"LOGINDISABLED" in greeting and b"AUTH=PLAIN" not in greeting
    s.sendall(b"a LOGIN demo@example.test demo-pw\r\n")
    assert _until(s, b"a (OK|NO|BAD)").endswith(
        b"a NO [PRIVACYREQUIRED] use STARTTLS before logging in\r\n"
    )
    s.sendall(b"b AUTHENTICATE PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AGRlbW8tcHc=\r\n")
    assert b"b NO [PRIVACYREQUIRED]" in _until(s, b"b (OK|NO|BAD)")
    s.close()


def test_malformed_commands_get_bad_not_a_dropped_session(server: Daisy) -> None:
    s = _raw(server)
    _until(s, b"\r\n")
    s.sendall(b'a LOGIN "demo@example.test" demo-pw\r\n')
    assert b"a OK" in _until(s, b"a (OK|NO)")
    bad = [
        b"b FETCH\r\n",
        b"c SELECT\r\n",
        b'd LIST "unterminated\r\n',
        b"e FETCH 1 (BODY[1.x])\r\n",
        b"f UID\r\n",
        b"g STATUS INBOX (NOPE)\r\n",
        b"h SEARCH FROM\r\n",
        b"i APPEND INBOX (\\Bogus) {3+}\r\nabc\r\n",
        b"j STORE 1 +FLAGS (\\Seen)\r\n",  # not selected yet
    ]
    for line in bad:
        s.sendall(line)
        tag = line.split(b" ")[0]
        reply = _until(s, tag + b" (OK|NO|BAD)")
        assert re.search(tag + rb" BAD ", reply), (line, reply)
    s.sendall(b"z NOOP\r\n")
    assert b"z OK" in _until(s, b"z (OK|NO|BAD)")
    s.close()


def test_mbox_mailbox_refused_with_the_fix_named(server: Daisy) -> None:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login("old@example.test", "old-pw")
    assert "UNAVAILABLE" in str(e.value) and "mailbox convert" in str(e.value)
    m.logout()
    assert "imap.login.mbox" in server.logs()


def test_other_sessions_changes_announced_at_next_command(server: Daisy) -> None:
    send(server, "other@example.test", "one")
    send(server, "other@example.test", "two")
    a = imap(server, "other@example.test", "other-pw")
    b = imap(server, "other@example.test", "other-pw")
    _, data = a.select("INBOX")
    count = int(data[0])
    a.untagged_responses.clear()
    b.select("INBOX")
    b.store("1", "+FLAGS", "(\\Deleted \\Flagged)")
    b.expunge()
    b.store("1", "+FLAGS", "($Work)")
    send(server, "other@example.test", "three")
    deadline = time.monotonic() + 5
    responses: dict[str, list[object]] = {}
    while time.monotonic() < deadline:
        a.noop()
        responses = a.untagged_responses
        if {"EXISTS", "EXPUNGE", "FETCH"} <= responses.keys():
            break
        time.sleep(0.1)
    assert responses.get("EXPUNGE") == [b"1"]
    assert any(b"$Work" in f for f in responses["FETCH"])  # type: ignore[operator]
    assert responses.get("EXISTS") == [str(count).encode()]  # one gone, one new
    a.logout()
    b.logout()


def test_folder_deleted_under_a_selected_session(server: Daisy) -> None:
    a = imap(server)
    b = imap(server)
    assert a.create("Doomed")[0] == "OK"
    a.append("Doomed", None, None, b"Subject: x\r\n\r\nx\r\n")
    a.select("Doomed")
    a.untagged_responses.clear()
    assert b.delete("Doomed")[0] == "OK"
    typ, _ = a.noop()
    assert typ == "OK"
    assert a.untagged_responses.get("EXPUNGE") == [b"1"]
    _, listing = b.list()
    assert not any(b'"Doomed"' in line for line in listing)  # type: ignore[operator]
    a.logout()
    b.logout()


def _fetchmail(daisy: Daisy, tmp: Path, tls: str, *extra: str) -> subprocess.CompletedProcess[str]:
    fetchmail = require_tool("fetchmail")
    out = tmp / "fetched"
    out.mkdir(exist_ok=True)
    rc = tmp / "fetchmailrc"
    port = daisy.ports["imaps" if tls.startswith("ssl ") else "imap"]
    rc.write_text(
        f"poll 127.0.0.1 service {port} protocol imap\n"
        f'  user "fm%example.test" password "fm-pw" is root here\n'
        f"  mda \"/bin/sh -c 'cat > {out}/$$.$(date +%s%N)'\" {tls}\n"
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp), FETCHMAILHOME=str(tmp))
    return subprocess.run(
        [fetchmail, "-f", str(rc), "--nodetach", "--nosyslog", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_fetchmail_over_imap_keep_then_flush(server: Daisy, tmp_path: Path) -> None:
    for i in range(2):
        send(server, "fm@example.test", f"fm {i}")
    res = _fetchmail(server, tmp_path, "sslproto '' ", "--keep")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list((tmp_path / "fetched").iterdir())) == 2
    res = _fetchmail(server, tmp_path, "ssl no sslcertck", "--keep")
    assert res.returncode == 1, res.stdout + res.stderr  # 1: no new (unseen) mail
    send(server, "fm@example.test", "fm later")
    res = _fetchmail(server, tmp_path, "ssl no sslcertck", "--all", "--nokeep")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list((tmp_path / "fetched").iterdir())) == 5
    m = imap(server, "fm@example.test", "fm-pw")
    _, data = m.select("INBOX")
    assert data == [b"0"]
    m.logout()


def test_sslscan_imap_and_imaps(server: Daisy) -> None:
    sslscan = require_tool("sslscan")
    for service, extra in (("imap", ["--starttls-imap"]), ("imaps", [])):
        res = subprocess.run(
            [
                sslscan,
                "--no-colour",
                "--no-heartbleed",
                "--no-groups",
                *extra,
                f"127.0.0.1:{server.ports[service]}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        protocols = dict(re.findall(r"^(SSLv\d|TLSv1\.\d)\s+(enabled|disabled)$", res.stdout, re.M))
        enabled = sorted(p for p, state in protocols.items() if state == "enabled")
        assert enabled == ["TLSv1.2", "TLSv1.3"], res.stdout


def test_stop_says_bye_to_an_idling_client(daisy: Daisy) -> None:
    m = imap(daisy)
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    start = time.monotonic()
    assert daisy.stop() == 0
    assert time.monotonic() - start < 10
    m.sock.settimeout(5)
    assert m.readline().startswith(b"* BYE")
