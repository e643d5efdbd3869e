"""The login cache on real sockets (issue 15 item 3): repeated good logins over POP3, IMAP
and SMTP AUTH skip the hash check (each skip logs ``auth.cache.hit`` at debug level), a
CLI `user passwd` or `user remove` reaches the server within about a second, a wrong
password after a cached login fails as before and is counted, and ``cache_ttl = 0``
turns it off."""

from __future__ import annotations

import base64
import imaplib
import poplib
import re
import signal
import smtplib
import time
from collections.abc import Callable, Iterator

import pytest

from tests.clients import Pop3From, tls_context
from tests.conftest import Daisy


def pop3_login(d: Daisy, user: str, password: str, source: str = "127.0.0.1") -> str:
    """The reply to PASS: "+OK..." or the -ERR text."""
    p = Pop3From(d.ports["pop3"], source)
    try:
        p.user(user)
        try:
            return p.pass_(password).decode()
        except poplib.error_proto as e:
            return bytes(e.args[0]).decode()
    finally:
        p.quit() if p.sock else None


def imap_login(d: Daisy, user: str, password: str) -> bool:
    m = imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=30)
    try:
        m.login(user, password)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        m.logout()


def smtp_login(d: Daisy, user: str, password: str) -> int:
    with smtplib.SMTP("127.0.0.1", d.ports["submission"], timeout=30) as s:
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        code, _ = s.docmd("AUTH", "PLAIN " + token)
        return code


def hits(d: Daisy, user: str) -> int:
    return len(re.findall(rf"auth\.cache\.hit .*user={re.escape(user)}\b", d.logs()))


USERS = ("poll", "imap", "smtp", "change", "gone", "wrong", "other")


def _server(d: Daisy, ttl: int, users: tuple[str, ...] = USERS) -> Daisy:
    if not d.config.exists():
        d.init()
    d.set_config("[log]", "level", '"debug"')
    d.set_config("[auth]", "cache_ttl", str(ttl))
    d.set_config("[limits]", "auth_failure_delay", "0.5")
    d.set_config("[pop3]", "allow_plaintext_auth", "true")  # other 127/8 sources, no TLS
    d.cli("domain", "add", "example.test")
    for name in users:
        d.add_user(f"{name}@example.test", f"{name}-pw")
    d.start()
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = _server(Daisy(tmp_path_factory.mktemp("authcache") / "daisy"), 3600)
    yield d
    d.stop()


def eventually(check: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until check() held; fails the test when it did not within timeout."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_repeated_pop3_logins_hit_the_cache(server: Daisy) -> None:
    for _ in range(5):
        assert pop3_login(server, "poll@example.test", "poll-pw").startswith("+OK")
    assert hits(server, "poll@example.test") == 4  # the first one paid argon2
    logs = server.logs()
    # Each hit is logged with its session's id, and the session logs its login as before.
    sids = re.findall(r"auth\.cache\.hit sid=(\w+) client=127\.0\.0\.1 user=poll@", logs)
    assert len(sids) == 4
    for sid in sids:
        assert re.search(rf"pop3\.login sid={sid} .*user=poll@example\.test", logs)


def test_repeated_imap_logins_hit_the_cache(server: Daisy) -> None:
    for _ in range(4):
        assert imap_login(server, "imap@example.test", "imap-pw")
    assert hits(server, "imap@example.test") == 3


def test_repeated_smtp_auth_hits_the_cache(server: Daisy) -> None:
    for _ in range(3):
        assert smtp_login(server, "smtp@example.test", "smtp-pw") == 235
    assert hits(server, "smtp@example.test") == 2


def test_user_passwd_makes_the_old_password_fail_within_two_seconds(server: Daisy) -> None:
    for _ in range(2):
        assert pop3_login(server, "change@example.test", "change-pw", "127.0.0.2").startswith("+OK")
    assert hits(server, "change@example.test") == 1
    server.cli("user", "passwd", "change@example.test", "--password-stdin", input="changed-pw\n")
    eventually(
        lambda: pop3_login(server, "change@example.test", "changed-pw", "127.0.0.2").startswith(
            "+OK"
        )
    )
    assert not pop3_login(server, "change@example.test", "change-pw", "127.0.0.2").startswith("+OK")
    assert not imap_login(server, "change@example.test", "change-pw")


def test_user_remove_makes_the_login_fail_within_two_seconds(server: Daisy) -> None:
    for _ in range(2):
        assert imap_login(server, "gone@example.test", "gone-pw")
    assert hits(server, "gone@example.test") == 1
    server.cli("user", "remove", "gone@example.test")
    eventually(lambda: not imap_login(server, "gone@example.test", "gone-pw"))
    # Until the server's snapshot shows the removal (under a second), a login may still
    # come from the cache; once one has failed, none does again.
    after = hits(server, "gone@example.test")
    assert not pop3_login(server, "gone@example.test", "gone-pw", "127.0.0.3").startswith("+OK")
    assert not imap_login(server, "gone@example.test", "gone-pw")
    assert hits(server, "gone@example.test") == after


def test_wrong_password_after_a_cached_login_fails_alike_and_is_counted(server: Daisy) -> None:
    src = "127.0.0.4"
    for _ in range(2):
        assert pop3_login(server, "wrong@example.test", "wrong-pw", src).startswith("+OK")
    t0 = time.monotonic()
    cached = pop3_login(server, "wrong@example.test", "guess", src)
    failed_in = time.monotonic() - t0
    uncached = pop3_login(server, "other@example.test", "guess", "127.0.0.5")
    unknown = pop3_login(server, "nobody@example.test", "guess", "127.0.0.6")
    assert cached == uncached == unknown
    assert cached.startswith("-ERR")
    assert failed_in >= 0.5  # the failure delay, as for any failure
    # Counted: the next login on the account, even with the right password and from the
    # cache, first waits for the throttle's delay.
    t0 = time.monotonic()
    assert pop3_login(server, "wrong@example.test", "wrong-pw", "127.0.0.7").startswith("+OK")
    assert time.monotonic() - t0 >= 0.5
    assert hits(server, "wrong@example.test") == 2
    assert re.search(r"pop3\.login\.failed .*user=wrong@example\.test", server.logs())


def test_cache_ttl_zero_turns_it_off(daisy_dir: Daisy) -> None:
    d = _server(daisy_dir, 0, ("poll", "imap"))
    for _ in range(3):
        assert pop3_login(d, "poll@example.test", "poll-pw").startswith("+OK")
        assert imap_login(d, "imap@example.test", "imap-pw")
    assert "auth.cache.hit" not in d.logs()
    assert d.logs().count("pop3.login ") >= 3


def test_negative_cache_ttl_is_refused(daisy_dir: Daisy) -> None:
    daisy_dir.set_config("[auth]", "cache_ttl", "-1")
    res = daisy_dir.cli("check", check=False)
    assert res.returncode != 0
    assert "auth.cache_ttl" in res.stderr + res.stdout


def test_sighup_with_cache_ttl_zero_turns_the_cache_off(daisy_dir: Daisy) -> None:
    d = _server(daisy_dir, 3600, ("poll",))
    for _ in range(2):
        assert pop3_login(d, "poll@example.test", "poll-pw").startswith("+OK")
    assert hits(d, "poll@example.test") == 1
    d.set_config("[auth]", "cache_ttl", "0")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    eventually(lambda: "reloaded " in d.logs(), timeout=10)
    for _ in range(2):
        assert pop3_login(d, "poll@example.test", "poll-pw").startswith("+OK")
    assert hits(d, "poll@example.test") == 1
