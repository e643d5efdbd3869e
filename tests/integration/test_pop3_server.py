"""The POP3 server on real sockets: poplib, curl, fetchmail and mpop."""

from __future__ import annotations

import os
import poplib
import smtplib
import socket
import subprocess
from pathlib import Path

import pytest

from daisymail.directory.model import AddressRule, Domain, Login, Mailbox
from daisymail.directory.passwords import hash_password
from daisymail.directory.sql import SqlDirectory
from tests.clients import tls_context
from tests.conftest import Daisy, require_tool

B1 = (
    b"From sender@example.com  Thu Nov 26 09:56:38 2026\nSubject: one\nFrom: a@example.com\n\n"
    b"body line\n>From here is a line\n.dot line\n\n"
    b"From other@example.com  Mon Jan  5 10:00:00 2004\n"
    b"Subject: two\nStatus: RO\nX-UIDL: abc123\n\nline1\nline2\nline3\n\n"
)


def send(daisy: Daisy, rcpt: str, subject: str, n: int = 1) -> None:
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        for i in range(n):
            s.sendmail(
                "s@example.net", [rcpt], f"Subject: {subject} {i}\r\n\r\nhello {i}\r\n".encode()
            )


def pop(daisy: Daisy) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", daisy.ports["pop3"], timeout=10)


@pytest.fixture
def mbox_daisy(daisy_dir: Daisy) -> Daisy:
    """john@acme.com logs in to the legacy mbox of vector B1 (imported-style domain)."""
    box = daisy_dir.root / "spool-legacy" / "jsmith"
    box.parent.mkdir()
    box.write_bytes(B1)
    d = SqlDirectory(f"sqlite:///{daisy_dir.root / 'daisymail.db'}")
    d.add_domain(Domain(name="acme.com", fallback=True, login_case_sensitive=True, origin="legacy"))
    d.add_mailbox(Mailbox(name="jsmith", format="mbox", path=str(box)))
    d.add_login(
        Login(
            user="john",
            domain="acme.com",
            password_hash=hash_password("j04n4CmE"),
            mailbox="jsmith",
        )
    )
    d.add_address_rule(AddressRule(pattern="john@acme.com", target="jsmith"))
    d.close()
    daisy_dir.start()
    return daisy_dir


def test_teapop_vector_b1_over_the_wire(mbox_daisy: Daisy) -> None:
    for name in ("john@acme.com", "john%acme.com", "john@ACME.COM"):
        p = pop(mbox_daisy)
        p.user(name)
        p.pass_("j04n4CmE")
        assert p.stat() == (2, 150)
        assert p.list()[1] == [b"1 83", b"2 67"]
        assert p.uidl()[1] == [
            b"1 a38f70afb6b3cbb4ae26a78cf7d849de",
            b"2 44076b8841d80e83098610a829cd01c3",
        ]
        _, lines, _ = p.retr(1)
        assert lines == [
            b"Subject: one",
            b"From: a@example.com",
            b"",
            b"body line",
            b">From here is a line",
            b".dot line",
            b"",
        ]
        _, lines, _ = p.top(1, 0)
        assert lines == [b"Subject: one", b"From: a@example.com", b""]
        p.quit()
    # teapop user names are case-sensitive in imported domains
    p = pop(mbox_daisy)
    p.user("John@acme.com")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.pass_("j04n4CmE")
    p.quit()


def test_dele_only_at_quit_and_in_use(mbox_daisy: Daisy) -> None:
    box = mbox_daisy.root / "spool-legacy" / "jsmith"
    p = pop(mbox_daisy)
    p.user("john@acme.com")
    p.pass_("j04n4CmE")
    second = pop(mbox_daisy)
    second.user("john@acme.com")
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        second.pass_("j04n4CmE")
    p.dele(1)
    p.sock.close()  # disconnect without QUIT: nothing is deleted
    p.file.close()
    for _ in range(50):
        try:
            q = pop(mbox_daisy)
            q.user("john@acme.com")
            q.pass_("j04n4CmE")
            break
        except poplib.error_proto:
            import time

            time.sleep(0.1)
    assert box.read_bytes() == B1
    assert q.stat()[0] == 2
    q.dele(1)
    send(mbox_daisy, "john@acme.com", "arrived during session")
    q.quit()
    data = box.read_bytes()
    assert not data.startswith(b"From sender@example.com  Thu Nov 26")
    assert data.startswith(b"From other@example.com  Mon Jan  5 10:00:00 2004\n")
    assert b"Subject: arrived during session 0" in data


def test_maildir_login_stls_auth_plain_and_plaintext_rules(daisy: Daisy) -> None:
    send(daisy, "demo@example.test", "hi", 3)
    p = pop(daisy)
    caps = p.capa()
    assert "STLS" in caps and "UIDL" in caps and "RESP-CODES" in caps
    p.stls(context=tls_context())
    assert "STLS" not in p.capa()
    p.user("demo%example.test")
    p.pass_("demo-pw")
    count, _ = p.stat()
    assert count == 3
    uidls = p.uidl()[1]
    p.quit()
    p = pop(daisy)
    # AUTH PLAIN (RFC 5034) on loopback
    resp = p._shortcmd(
        "AUTH PLAIN " + __import__("base64").b64encode(b"\0demo@example.test\0demo-pw").decode()
    )
    assert resp.startswith(b"+OK")
    assert p.uidl()[1] == uidls  # stable across sessions
    p.dele(1)
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", daisy.ports["pop3s"], timeout=10, context=tls_context())
    p.user("demo@example.test")
    p.pass_("demo-pw")
    assert p.stat()[0] == 2
    p.quit()


def test_wrong_password_and_unknown_user_look_the_same(daisy: Daisy) -> None:
    replies = []
    for user, pw in (("demo@example.test", "wrong"), ("ghost@example.test", "demo-pw")):
        p = pop(daisy)
        p.user(user)
        with pytest.raises(poplib.error_proto) as e:
            p.pass_(pw)
        replies.append(str(e.value))
        p.quit()
    assert replies[0] == replies[1]
    # the third failure in one connection closes it
    sock = socket.create_connection(("127.0.0.1", daisy.ports["pop3"]), timeout=20)
    f = sock.makefile("rb")
    f.readline()
    for _ in range(3):
        sock.sendall(b"USER demo@example.test\r\nPASS bad\r\n")
        assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"-ERR")
    assert f.readline() == b""
    sock.close()


def test_curl_pop3_and_pop3s(daisy: Daisy) -> None:
    curl = require_tool("curl")
    send(daisy, "demo@example.test", "curl", 2)
    base = ["--max-time", "20", "-s", "-u", "demo%example.test:demo-pw"]
    res = subprocess.run(
        [curl, *base, f"pop3://127.0.0.1:{daisy.ports['pop3']}/"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) == 2
    res = subprocess.run(
        [curl, *base, "-k", f"pop3s://127.0.0.1:{daisy.ports['pop3s']}/2"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "Subject: curl 1" in res.stdout
    res = subprocess.run(
        [curl, *base, "-k", "--ssl-reqd", f"pop3://127.0.0.1:{daisy.ports['pop3']}/1"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "Subject: curl 0" in res.stdout


def _fetchmail(daisy: Daisy, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    fetchmail = require_tool("fetchmail")
    out = tmp / "fetched"
    out.mkdir(exist_ok=True)
    rc = tmp / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {daisy.ports['pop3']} protocol pop3 uidl\n"
        f'  user "demo@example.test" password "demo-pw" is root here\n'
        f'  mda "/bin/sh -c \'cat > {out}/$$.$(date +%s%N)\'" sslproto "" \n'
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp), FETCHMAILHOME=str(tmp))
    return subprocess.run(
        [fetchmail, "-f", str(rc), "--nodetach", "--nosyslog", "-i", str(tmp / "ids"), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_fetchmail_keep_then_flush(daisy: Daisy, tmp_path: Path) -> None:
    send(daisy, "demo@example.test", "fm", 3)
    res = _fetchmail(daisy, tmp_path, "--keep")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list((tmp_path / "fetched").iterdir())) == 3
    res = _fetchmail(daisy, tmp_path, "--keep")
    assert res.returncode == 1, res.stdout + res.stderr  # 1 = no new mail
    assert len(list((tmp_path / "fetched").iterdir())) == 3
    send(daisy, "demo@example.test", "later", 1)
    res = _fetchmail(daisy, tmp_path, "--flush")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list((tmp_path / "fetched").iterdir())) == 4
    p = pop(daisy)
    p.user("demo@example.test")
    p.pass_("demo-pw")
    assert p.stat()[0] == 0
    p.quit()


def test_mpop_over_stls(daisy: Daisy, tmp_path: Path) -> None:
    mpop = require_tool("mpop")
    send(daisy, "demo@example.test", "mpop", 2)
    out = tmp_path / "mpop-out"
    out.mkdir()
    conf = tmp_path / "mpoprc"
    conf.write_text(
        "account default\n"
        "host 127.0.0.1\n"
        f"port {daisy.ports['pop3']}\n"
        "user demo%example.test\n"
        "password demo-pw\n"
        "tls on\ntls_starttls on\ntls_certcheck off\n"
        f"uidls_file {tmp_path}/uidls\n"
        "keep on\n"
        f"delivery mda \"/bin/sh -c 'cat > {out}/$$'\"\n"
    )
    conf.chmod(0o600)
    res = subprocess.run([mpop, "-C", str(conf), "-q"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list(out.iterdir())) == 2
    res = subprocess.run([mpop, "-C", str(conf), "-q"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(list(out.iterdir())) == 2


def test_expire_days_removes_old_mail_at_quit_only(daisy_dir: Daisy) -> None:
    """teapop -e: old messages stay visible during the session and go at QUIT."""
    box = daisy_dir.root / "old-mbox"
    old = b"From a@x  Mon Jan  5 10:00:00 2004\nSubject: ancient\n\nold\n\n"
    box.write_bytes(old + b"From b@x  Thu Nov 26 09:56:38 2099\nSubject: future\n\nnew\n\n")
    d = SqlDirectory(f"sqlite:///{daisy_dir.root / 'daisymail.db'}")
    d.add_domain(Domain(name="acme.com"))
    d.add_mailbox(Mailbox(name="oldbox", format="mbox", path=str(box)))
    d.add_login(
        Login(user="old", domain="acme.com", password_hash=hash_password("pw"), mailbox="oldbox")
    )
    d.close()
    daisy_dir.set_config("[pop3]", "expire_days", "30")
    daisy_dir.start()
    p = pop(daisy_dir)
    assert p.capa().get("EXPIRE") == ["30"]
    p.user("old@acme.com")
    p.pass_("pw")
    assert p.stat()[0] == 2
    p.quit()
    assert box.read_bytes().startswith(b"From b@x  Thu Nov 26 09:56:38 2099\n")
    assert b"ancient" not in box.read_bytes()


class POP3From(poplib.POP3):
    """poplib from another source address: 127.0.0.2 is not a local client to Daisy."""

    def __init__(self, port: int, source: str) -> None:
        self._source = source
        super().__init__("127.0.0.1", port, timeout=10)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self._source, 0)
        )


def test_plaintext_login_needs_tls_from_remote_clients(daisy: Daisy) -> None:
    p = POP3From(daisy.ports["pop3"], "127.0.0.2")
    assert "USER" not in p.capa()
    with pytest.raises(poplib.error_proto) as e:
        p.user("demo@example.test")
        p.pass_("demo-pw")
    assert "TLS" in str(e.value) or "STLS" in str(e.value)
    p.stls(context=tls_context())
    p.user("demo@example.test")
    p.pass_("demo-pw")
    assert p.stat() == (0, 0)
    p.quit()


def test_legacy_crypt_hash_is_upgraded_at_the_next_good_login(daisy_dir: Daisy) -> None:
    from passlib.hash import sha512_crypt

    d = SqlDirectory(f"sqlite:///{daisy_dir.root / 'daisymail.db'}")
    d.add_domain(Domain(name="acme.com"))
    d.add_mailbox(Mailbox(name="crypt", format="maildir"))
    legacy = sha512_crypt.hash("old-secret")
    d.add_login(Login(user="c", domain="acme.com", password_hash=legacy, mailbox="crypt"))
    d.close()
    daisy_dir.start()
    p = pop(daisy_dir)
    p.user("c@acme.com")
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong")
    p.user("c@acme.com")
    p.pass_("old-secret")
    p.quit()
    d = SqlDirectory(f"sqlite:///{daisy_dir.root / 'daisymail.db'}", refresh_interval=0)
    (login,) = d.snapshot().logins
    d.close()
    assert login.password_hash.startswith("$argon2id$")
    p = pop(daisy_dir)
    p.user("c@acme.com")
    p.pass_("old-secret")  # the new hash verifies the same password
    p.quit()


def test_delete_after_top_removes_messages_sent_in_full(daisy_dir: Daisy) -> None:
    """teapop -D: a TOP that sent a whole message counts as reading it; read ones go at
    QUIT. A TOP that cut the body off keeps the message."""
    daisy_dir.set_config("[pop3]", "delete_after_top", "true")
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    daisy_dir.start()
    send(daisy_dir, "demo@example.test", "topped", n=3)
    p = pop(daisy_dir)
    assert p.capa().get("EXPIRE") == ["0"]
    p.user("demo@example.test")
    p.pass_("demo-pw")
    assert p.stat()[0] == 3
    assert p.top(1, 50)[1][-1] == b"hello 0"  # whole message
    assert p.top(2, 0)[1][-1] == b""  # header only: its body line was cut off
    p.retr(3)
    p.quit()
    p = pop(daisy_dir)
    p.user("demo@example.test")
    p.pass_("demo-pw")
    (left,) = p.uidl()[1]
    assert p.retr(1)[1][-1] == b"hello 1"
    p.quit()
    assert left.startswith(b"1 ")
