"""Logins on real sockets (issue 11, defects 2, 8 and 17): one resolver for SMTP AUTH and
POP3, no AUTH on the MX port unless configured (and then the send-as rule), failures
counted per account whatever the spelling, and every failure costing the same time."""

from __future__ import annotations

import base64
import poplib
import smtplib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from passlib.hash import des_crypt, ldap_sha1, md5_crypt

from daisymail.directory.model import Login, Mailbox
from daisymail.directory.passwords import plaintext_hash
from daisymail.directory.sql import SqlDirectory
from tests.clients import Pop3From, tls_context
from tests.conftest import Daisy


def pop3_fail_time(d: Daisy, name: str, password: str, source: str = "127.0.0.1") -> float:
    """Seconds from PASS to its reply, which must be a failure."""
    p = Pop3From(d.ports["pop3"], source)
    try:
        p.user(name)
        t0 = time.monotonic()
        with pytest.raises(poplib.error_proto, match=r"AUTH"):
            p.pass_(password)
        return time.monotonic() - t0
    finally:
        p.close()


def smtp_auth(
    d: Daisy, name: str, password: str, source: str = "127.0.0.1", port: str = "submission"
) -> tuple[int, float]:
    with smtplib.SMTP("127.0.0.1", d.ports[port], timeout=30, source_address=(source, 0)) as s:
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        token = base64.b64encode(f"\0{name}\0{password}".encode()).decode()
        t0 = time.monotonic()
        code, _ = s.docmd("AUTH", "PLAIN " + token)
        return code, time.monotonic() - t0


def _server(root: Path, **config: tuple[str, str]) -> Daisy:
    d = Daisy(root)
    d.init()
    for key, (section, value) in config.items():
        d.set_config(section, key, value)
    d.cli("domain", "add", "example.test")
    d.add_user("demo@example.test", "demo-pw")
    d.add_user("ceo@example.test", "ceo-pw")
    return d


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    """Default MX settings; logins without a domain go to example.test."""
    d = _server(
        tmp_path_factory.mktemp("logins") / "daisy",
        default_domain=("[auth]", '"example.test"'),
        allow_plaintext_auth=("[pop3]", "true"),
    )
    d.start()
    yield d
    d.stop()


LEGACY = {
    "plain": plaintext_hash("legacy-pw"),
    "sha": ldap_sha1.hash("legacy-pw"),
    "des": des_crypt.hash("legacy-pw"),
    "md5": md5_crypt.hash("legacy-pw"),
}


@pytest.fixture(scope="module")
def mx_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    """AUTH allowed on the MX port; no failure delay, so that only the check is timed."""
    d = _server(
        tmp_path_factory.mktemp("logins") / "daisy",
        mx_auth=("[smtp]", "true"),
        auth_failure_delay=("[limits]", "0.0"),
    )
    directory = SqlDirectory(f"sqlite:///{d.root / 'daisymail.db'}")
    for kind, stored in LEGACY.items():
        directory.add_mailbox(Mailbox(name=f"legacy-{kind}"))
        directory.add_login(Login(kind, "example.test", stored, f"legacy-{kind}"))
    directory.close()
    d.start()
    yield d
    d.stop()


# -- defect 2: AUTH on the MX port ----------------------------------------------------------


def test_mx_port_offers_no_auth_by_default(plain: Daisy) -> None:
    with smtplib.SMTP("127.0.0.1", plain.ports["smtp"], timeout=30) as s:
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        assert not s.has_extn("auth")
        token = base64.b64encode(b"\0demo@example.test\0demo-pw").decode()
        code, msg = s.docmd("AUTH", "PLAIN " + token)
        assert code == 503 and msg.startswith(b"5.5.1"), (code, msg)
        with pytest.raises(smtplib.SMTPNotSupportedError):
            s.login("demo@example.test", "demo-pw")
    # submission still takes the same credentials
    assert smtp_auth(plain, "demo@example.test", "demo-pw")[0] == 235


def test_mx_auth_applies_the_submission_send_as_rule(mx_auth: Daisy) -> None:
    # From an address that may not relay by itself, as in the report.
    src = ("127.0.0.5", 0)
    with smtplib.SMTP("127.0.0.1", mx_auth.ports["smtp"], timeout=30, source_address=src) as s:
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        assert s.has_extn("auth")
        s.login("demo@example.test", "demo-pw")
        code, msg = s.docmd("MAIL", "FROM:<ceo@example.test>")
        assert code == 553 and b"5.7.1" in msg, (code, msg)
        code, _ = s.docmd("RCPT", "TO:<victim@remote.example>")
        assert code == 503  # no transaction
        s.rset()
        assert s.docmd("MAIL", "FROM:<demo@example.test>")[0] == 250
        assert s.docmd("RCPT", "TO:<ceo@example.test>")[0] == 250
        # the header is checked as on port 587, too
        code, msg = s.data(b"From: <ceo@example.test>\r\nSubject: x\r\n\r\nhi\r\n")
        assert code == 553, (code, msg)
    # unauthenticated mail to a hosted user is still taken from anyone, as an MX must
    with smtplib.SMTP("127.0.0.1", mx_auth.ports["smtp"], timeout=30, source_address=src) as s:
        s.sendmail("ceo@example.test", ["demo@example.test"], b"Subject: in\r\n\r\nhi\r\n")
        code, _ = s.docmd("MAIL", "FROM:<ceo@example.test>")
        assert code == 250
        assert s.docmd("RCPT", "TO:<victim@remote.example>")[0] == 550  # no relaying


def test_submission_port_refuses_the_same(mx_auth: Daisy) -> None:
    with smtplib.SMTP("127.0.0.1", mx_auth.ports["submission"], timeout=30) as s:
        s.starttls(context=tls_context())
        s.login("demo@example.test", "demo-pw")
        assert s.docmd("MAIL", "FROM:<ceo@example.test>")[0] == 553


# -- defect 17: one resolver -----------------------------------------------------------------


def test_default_domain_login_works_for_smtp_and_pop3(plain: Daisy) -> None:
    assert smtp_auth(plain, "demo", "demo-pw")[0] == 235
    assert smtp_auth(plain, "demo%example.test", "demo-pw")[0] == 235
    p = poplib.POP3("127.0.0.1", plain.ports["pop3"], timeout=30)
    p.user("demo")
    assert p.pass_("demo-pw").startswith(b"+OK")
    p.quit()


# -- defect 8: throttling per account, equal-time failures ----------------------------------


def test_failures_count_per_account_across_spellings_and_protocols(plain: Daisy) -> None:
    # auth_failure_delay 0.2 (tests): after n failures the account waits 0.2 * 2**(n-1) s.
    # Four spellings of one account, each from its own client address, so that only the
    # account's count can make the fifth attempt (from a fifth address) wait.
    pop3_fail_time(plain, "ceo%example.test", "bad", "127.0.0.11")
    assert smtp_auth(plain, "CEO@EXAMPLE.TEST", "bad", "127.0.0.12")[0] == 535
    pop3_fail_time(plain, "ceo@example.test ", "bad", "127.0.0.13")
    assert smtp_auth(plain, "Ceo%Example.Test", "bad", "127.0.0.14")[0] == 535
    waited = pop3_fail_time(plain, "ceo@example.test", "bad", "127.0.0.15")
    assert waited > 1.2, waited  # 1.6 s of throttle; one count per spelling gave ~0.4 s
    # unknown names count under their normalized spelling, the default domain filled in
    pop3_fail_time(plain, "ghost%example.test", "bad", "127.0.0.21")
    assert smtp_auth(plain, "ghost", "bad", "127.0.0.22")[0] == 535
    pop3_fail_time(plain, "GHOST@example.test  ", "bad", "127.0.0.23")
    code, waited = smtp_auth(plain, "ghost@Example.Test", "bad", "127.0.0.24")
    assert code == 535 and waited > 0.6, waited  # 0.8 s of throttle


def test_every_failure_costs_the_same(mx_auth: Daisy) -> None:
    """Unknown user, wrong password on a legacy hash, wrong password on argon2: the
    medians agree within a ratio no busy machine makes fail, while a legacy-hash check
    without the dummy argon2 verify is a hundred times faster."""
    names = ["demo@example.test", "nobody@example.test"] + [f"{k}@example.test" for k in LEGACY]
    samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(7):
        for name in names:  # interleaved, so load changes hit every kind alike
            samples[name].append(pop3_fail_time(mx_auth, name, f"wrong{i}"))
    medians = {n: statistics.median(t) for n, t in samples.items()}
    argon = medians["demo@example.test"]
    for name, median in medians.items():
        assert median > 0.4 * argon, (name, medians)
        assert median < 2.5 * argon, (name, medians)
    # the accounts are real: the right password works and is upgraded
    p = poplib.POP3("127.0.0.1", mx_auth.ports["pop3"], timeout=30)
    p.user("des@example.test")
    assert p.pass_("legacy-pw").startswith(b"+OK")
    p.quit()
