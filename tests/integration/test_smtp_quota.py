"""Mailbox quotas on every way mail arrives: SMTP (RCPT with and without SIZE=, the real
size after DATA and BDAT, several recipients), submission and `daisymail sendmail`; and
IMAP's GETQUOTAROOT agreeing with what SMTP refuses, across POP3 and IMAP deletions."""

from __future__ import annotations

import imaplib
import poplib
import re
import signal
import smtplib
from collections.abc import Iterator

import pytest

from tests.conftest import Daisy
from tests.integration.test_smtp_server import maildir_messages, raw_dialogue, smtp, wait_for
from tests.integration.test_submission import CTX

FULL, ROOMY = "full.example.test", "roomy.example.test"  # the users' mailboxes


def message(octets: int, subject: str = "q") -> bytes:
    """A message of about ``octets`` octets as stored (LF line ends)."""
    line = b"x" * 78 + b"\r\n"
    return b"Subject: %s\r\n\r\n" % subject.encode() + line * (octets // 79)


@pytest.fixture
def server(daisy_dir: Daisy) -> Iterator[Daisy]:
    """full@ with a 20K quota, roomy@ with none (and a 1K limit on nothing else)."""
    d = daisy_dir
    d.cli("domain", "add", "example.test")
    d.add_user("full@example.test", "full-pw")
    d.add_user("roomy@example.test", "roomy-pw")
    assert "quota 20480 octets" in d.cli("mailbox", "set", FULL, "--quota", "20K").stdout
    d.start()
    yield d


def storage(d: Daisy) -> tuple[int, int]:
    """(used, limit) in KiB as IMAP GETQUOTAROOT reports them for full@."""
    m = imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=10)
    try:
        m.login("full@example.test", "full-pw")
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK", data
        found = re.search(rb"STORAGE (\d+) (\d+)", data[1][0])
        assert found, data
        return int(found[1]), int(found[2])
    finally:
        m.logout()


def without_size(
    s: smtplib.SMTP, sender: str, rcpts: list[str], msg: bytes, rcpt_options: tuple[str, ...] = ()
) -> tuple[list[int], int, bytes]:
    """A transaction without SIZE= (smtplib's sendmail always declares it): the RCPT
    codes and the reply after DATA."""
    assert s.mail(sender)[0] == 250
    codes = [s.rcpt(r, list(rcpt_options))[0] for r in rcpts]
    code, text = s.data(msg)
    return codes, code, text


def refused(s: smtplib.SMTP, rcpt: str, size: int | None = None) -> tuple[int, bytes]:
    opts = [f"SIZE={size}"] if size is not None else []
    assert s.mail("sender@example.net", opts)[0] == 250
    return s.rcpt(rcpt)


def test_near_and_over_the_limit(server: Daisy) -> None:
    d = server
    with smtp(d) as s:
        s.ehlo("client.test")
        s.sendmail("sender@example.net", ["full@example.test"], message(12_000))
    used, limit = storage(d)
    assert limit == 20 and 11 <= used <= 13
    with smtp(d) as s:
        s.ehlo("client.test")
        # SIZE= says it cannot fit now: refused at RCPT, temporarily
        code, text = refused(s, "full@example.test", 12_000)
        assert code == 452 and text.startswith(b"4.2.2"), text
        s.rset()
        # larger than the whole quota: never fits
        code, text = refused(s, "full@example.test", 30_000)
        assert code == 552 and text.startswith(b"5.2.2"), text
        s.rset()
        # no SIZE=: accepted at RCPT, refused after DATA with the real size
        codes, code, text = without_size(
            s, "sender@example.net", ["full@example.test"], message(12_000)
        )
        assert codes == [250] and code == 452 and text.startswith(b"4.2.2"), text
        # what still fits goes in
        s.sendmail("sender@example.net", ["full@example.test"], message(4_000, "small"))
    assert len(maildir_messages(d, FULL)) == 2
    assert 15 <= storage(d)[0] <= 17
    assert "smtp.message.over_quota" in d.logs()


def test_a_full_mailbox_is_refused_at_rcpt_until_mail_is_deleted(server: Daisy) -> None:
    d = server
    with smtp(d) as s:
        s.ehlo("client.test")
        s.sendmail("sender@example.net", ["full@example.test"], message(12_000))
        s.sendmail("sender@example.net", ["full@example.test"], message(6_000))
    d.cli("mailbox", "set", FULL, "--quota", "16K")  # now over: IMAP says so too
    used, limit = storage(d)
    assert used > limit == 16
    with smtp(d) as s:
        s.ehlo("client.test")
        code, text = refused(s, "full@example.test")
        assert code == 452 and b"4.2.2" in text
    # POP3 deletes the large one: room again, at once
    p = poplib.POP3("127.0.0.1", d.ports["pop3"], timeout=10)
    p.user("full@example.test")
    p.pass_("full-pw")
    sizes = [int(x.split()[1]) for x in p.list()[1]]
    p.dele(sizes.index(max(sizes)) + 1)
    p.quit()
    assert storage(d)[0] < 8
    with smtp(d) as s:
        s.ehlo("client.test")
        s.sendmail("sender@example.net", ["full@example.test"], message(6_000))
        # IMAP expunges count as well: fill, expunge, send again
        code, _ = refused(s, "full@example.test", 6_000)
        assert code == 452
        s.rset()
    m = imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=10)
    m.login("full@example.test", "full-pw")
    m.select("INBOX")
    m.store("1:*", "+FLAGS", "\\Deleted")
    m.expunge()
    m.logout()
    assert storage(d)[0] == 0
    with smtp(d) as s:
        s.ehlo("client.test")
        code, _ = refused(s, "full@example.test", 6_000)
        assert code == 250


def test_several_recipients_some_over_quota(server: Daisy) -> None:
    d = server
    with smtp(d) as s:
        s.ehlo("client.test")
        s.sendmail("sender@example.net", ["full@example.test"], message(12_000))
        # with SIZE=, the full mailbox is refused at RCPT and the other takes the message
        assert s.mail("roomy@example.test", ["SIZE=12000"])[0] == 250
        assert s.rcpt("full@example.test")[0] == 452
        assert s.rcpt("roomy@example.test")[0] == 250
        assert s.data(message(12_000, "with-size"))[0] == 250
        # without SIZE=, both are accepted at RCPT; after DATA the message is stored for
        # roomy@, and full@ is named in a failure DSN to the sender (roomy@ too)
        codes, code, _ = without_size(
            s,
            "roomy@example.test",
            ["full@example.test", "roomy@example.test"],
            message(12_000, "no-size"),
            ("NOTIFY=FAILURE,SUCCESS",),
        )
        assert codes == [250, 250] and code == 250
        # every recipient over quota: the one reply after DATA refuses the message
        codes, code, _ = without_size(
            s, "roomy@example.test", ["full@example.test"], message(12_000)
        )
        assert codes == [250] and code == 452
    assert len(maildir_messages(d, FULL)) == 1
    wait_for(lambda: len(maildir_messages(d, ROOMY)) >= 4)
    roomy = maildir_messages(d, ROOMY)
    assert len(roomy) == 4
    subjects = [re.search(rb"^Subject: (.*)$", m, re.M)[1] for m in roomy]  # type: ignore[index]
    assert subjects[:2] == [b"with-size", b"no-size"]
    failed = next(m for m in roomy if b"Action: failed" in m)
    assert b"Final-Recipient: rfc822; full@example.test" in failed
    assert b"Status: 5.2.2" in failed
    assert b"rfc822; roomy@" not in failed
    assert b"Subject: no-size" in failed  # the header comes back
    assert b"xxxxxxxx" not in failed  # not the body
    # the "delivered" notice names only the recipient that got it
    delivered = next(m for m in roomy if b"Action: delivered" in m)
    assert b"Final-Recipient: rfc822; roomy@example.test" in delivered
    assert b"rfc822; full@" not in delivered
    assert "smtp.rcpt.over_quota" in d.logs()


def test_bdat_real_size(server: Daisy) -> None:
    d = server
    big = message(24_000)
    tiny = b"Subject: tiny\r\n\r\nok\r\n"
    out = raw_dialogue(
        d,
        [
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.net>\r\nRCPT TO:<full@example.test>\r\n",
            b"BDAT 10000\r\n" + big[:10000],
            b"BDAT %d LAST\r\n" % (len(big) - 10000) + big[10000:],
            b"MAIL FROM:<a@example.net> SIZE=100\r\nRCPT TO:<full@example.test>\r\n",
            b"BDAT %d LAST\r\n" % len(tiny) + tiny,
            b"QUIT\r\n",
        ],
    )
    replies = re.findall(rb"^(\d{3})[ -](\S*)", out, re.M)
    assert (b"552", b"5.2.2") in replies  # 24K never fits in 20K
    assert [m.endswith(b"Subject: tiny\n\nok\n") for m in maildir_messages(d, FULL)] == [True]


def test_submission_and_sendmail(server: Daisy) -> None:
    d = server
    with smtp(d, "submission") as s:
        s.starttls(context=CTX)
        s.login("roomy@example.test", "roomy-pw")
        s.sendmail("roomy@example.test", ["full@example.test"], message(15_000))
        code, text = refused_as(s, "roomy@example.test", "full@example.test", 15_000)
        assert code == 452 and b"4.2.2" in text
    out = d.cli(
        "sendmail",
        "-f",
        "roomy@example.test",
        "full@example.test",
        input=message(15_000).decode(),
        check=False,
    )
    assert out.returncode == 75, out  # EX_TEMPFAIL: a full mailbox may empty
    assert "452 4.2.2" in out.stderr
    assert len(maildir_messages(d, FULL)) == 1


def refused_as(s: smtplib.SMTP, sender: str, rcpt: str, size: int) -> tuple[int, bytes]:
    assert s.mail(sender, [f"SIZE={size}"])[0] == 250
    return s.rcpt(rcpt)


def test_the_default_quota_applies_at_sighup(server: Daisy) -> None:
    d = server
    with smtp(d) as s:
        s.sendmail("sender@example.net", ["roomy@example.test"], message(12_000))
    text = d.config.read_text().replace("[storage]", '[storage]\nquota = "10K"', 1)
    d.config.write_text(text)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded " in d.logs(), timeout=10)
    with smtp(d) as s:
        s.ehlo("client.test")
        code, text_ = refused(s, "roomy@example.test")
        assert code == 452 and b"4.2.2" in text_  # 12K used of the new 10K default
        s.rset()
        code, _ = refused(s, "full@example.test", 12_000)  # its own 20K still applies
        assert code == 250
    m = imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=10)
    m.login("roomy@example.test", "roomy-pw")
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK" and b"STORAGE 12 10" in data[1][0], data
    m.logout()
    table = d.cli("mailbox", "list").stdout
    assert re.search(rf"^{ROOMY}\s.*\s10K \(default\)\s+12K?", table, re.M), table


def test_mbox_mailboxes_have_no_quota(daisy_dir: Daisy) -> None:
    d = daisy_dir
    d.cli("mailbox", "add", "old", "--format", "mbox")
    res = d.cli("mailbox", "set", "old", "--quota", "1K", check=False)
    assert res.returncode == 1
    assert "quotas need Maildir: daisymail mailbox convert old --to maildir" in res.stderr
    res = d.cli("mailbox", "set", "nosuch", "--quota", "1K", check=False)
    assert res.returncode == 1 and "no such mailbox" in res.stderr
    res = d.cli("mailbox", "add", "new")
    res = d.cli("mailbox", "set", "new", "--quota", "-5", check=False)
    assert res.returncode == 2 and "not a size" in res.stderr
    d.cli("mailbox", "set", "new", "--quota", "2G")
    table = d.cli("mailbox", "list").stdout
    assert re.search(r"^new\s+maildir\s+\(default\)\s+2G\s+0$", table, re.M), table
    assert re.search(r"^old\s+mbox\s+\(default\)\s+-\s+-$", table, re.M), table
