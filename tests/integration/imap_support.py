"""Shared by the IMAP tests: one server per module, clients, and SMTP delivery."""

from __future__ import annotations

import imaplib
import smtplib

from tests.conftest import Daisy


def start_server(root: Daisy) -> Daisy:
    """demo@, other@, fm@ and sync@example.test on Maildirs, old@example.test on an mbox file."""
    root.init()
    root.cli("domain", "add", "example.test")
    root.add_user("demo@example.test", "demo-pw")
    root.add_user("other@example.test", "other-pw")
    root.add_user("fm@example.test", "fm-pw")
    root.add_user("sync@example.test", "sync-pw")
    root.cli("mailbox", "add", "oldbox", "--format", "mbox")
    root.add_user("old@example.test", "old-pw", "--mailbox", "oldbox")
    root.start()
    return root


def send(daisy: Daisy, rcpt: str, subject: str, body: str = "hello") -> None:
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        s.sendmail(
            "s@example.net",
            [rcpt],
            f"From: Sender <s@example.net>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n{body}\r\n",
        )


def imap(daisy: Daisy, user: str = "demo@example.test", password: str = "demo-pw") -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", daisy.ports["imap"], timeout=10)
    m.login(user, password)
    return m
