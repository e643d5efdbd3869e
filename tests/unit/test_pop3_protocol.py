"""The sans-I/O POP3 session: dialogues, pipelining, every error path, B1 wire format."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daisymail.pop3.protocol import (
    MAX_BUFFERED,
    Close,
    Commit,
    Event,
    LoginAttempt,
    LoginFailed,
    LoginOk,
    Pop3Session,
    ReadToEnd,
    SendMessage,
    Settings,
    StartTLS,
    format_message,
)
from daisymail.store.base import MessageInfo, ViewOptions
from daisymail.store.mbox_view import open_mbox_view

BANNER = "<1700000000.ABCDEF@mail.test>"
SECURE = Settings(hostname="mail.test", allow_plaintext=True)
BODIES = [
    [b"Subject: one\n", b"\n", b"hello\n", b".dot\n", b"\n"],
    [b"Subject: two\r\n", b"X: y\r\n", b"\r\n", b"a\r\n", b"b\r\n", b"c\r\n"],
    [b"Subject: three\n", b"\n", b"x\n"],
]
INFOS = [MessageInfo(22, "uid-one"), MessageInfo(31, "uid-two"), MessageInfo(20, "uid-three")]


def plain(authzid: str, authcid: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


class Driver:
    """Plays the server: answers events the way pop3.server will."""

    def __init__(
        self,
        config: Settings = SECURE,
        *,
        infos: Sequence[MessageInfo] = INFOS,
        bodies: Sequence[list[bytes]] = BODIES,
        commit_ok: bool = True,
        in_use: bool = False,
        temporary: bool = False,
        answer_tls: bool = True,
    ) -> None:
        self.session = Pop3Session(config, timestamp_banner=BANNER)
        self.infos = infos
        self.bodies = bodies
        self.commit_ok = commit_ok
        self.in_use = in_use
        self.temporary = temporary
        self.answer_tls = answer_tls
        self.events: list[Event] = []
        self.closed = False
        self.out = bytearray()
        self.session.start()
        self.pump()

    def send(self, data: bytes) -> bytes:
        self.session.receive_data(data)
        self.pump()
        return self.take()

    def take(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out

    def pump(self) -> None:
        while not self.closed:
            event = self.session.next_event()
            self.out += self.session.data_to_send()
            if event is None:
                return
            self.events.append(event)
            self.handle(event)
            self.out += self.session.data_to_send()

    def handle(self, event: Event) -> None:
        if isinstance(event, LoginAttempt):
            good = event.user_name == "john@acme.com" and (
                event.password == "secret" or event.apop_digest == "0123abcd"
            )
            if good and not (self.in_use or self.temporary):
                self.session.login_result(LoginOk(self.infos))
            else:
                self.session.login_result(
                    LoginFailed(in_use=good and self.in_use, temporary=self.temporary)
                )
        elif isinstance(event, SendMessage):
            body = ReadToEnd(self.bodies[event.index])
            self.out += b"".join(format_message(body, event.top_lines))
            self.out += b".\r\n"
            if event.top_lines is not None:
                self.session.top_sent(event.index, body.whole)
        elif isinstance(event, Commit):
            self.session.commit_result(self.commit_ok)
        elif isinstance(event, StartTLS):
            if self.answer_tls:
                self.session.tls_started()
        else:
            assert isinstance(event, Close)
            self.closed = True


def logged_in(config: Settings = SECURE, **kwargs: Any) -> Driver:
    driver = Driver(config, **kwargs)
    assert driver.take().startswith(b"+OK")
    assert driver.send(b"USER john@acme.com\r\nPASS secret\r\n").endswith(
        b"+OK Logged in, 3 messages (73 octets)\r\n"
    )
    return driver


def run(driver: Driver, table: list[tuple[bytes, bytes]]) -> None:
    for command, reply in table:
        assert driver.send(command + b"\r\n") == reply, command


# -- greeting and authorization -----------------------------------------------------------


def test_greeting_shows_apop_timestamp_only_when_enabled() -> None:
    assert Driver().take() == b"+OK mail.test POP3 server ready\r\n"
    apop = replace(SECURE, apop_enabled=True)
    assert Driver(apop).take() == f"+OK mail.test POP3 server ready {BANNER}\r\n".encode()


def test_user_pass_dialogue() -> None:
    driver = Driver()
    driver.take()
    run(
        driver,
        [
            (b"USER john@acme.com", b"+OK Send your password\r\n"),
            (b"PASS secret", b"+OK Logged in, 3 messages (73 octets)\r\n"),
        ],
    )
    assert driver.events == [LoginAttempt("john@acme.com", "secret", None, "USER")]


def test_user_name_and_password_passed_verbatim() -> None:
    driver = Driver()
    driver.send(b"user  J\xc3\xb6rg%acme.com  \r\npass  pass word \r\n")
    assert driver.events == [LoginAttempt(" Jörg%acme.com  ", " pass word ", None, "USER")]


def test_authorization_errors() -> None:
    driver = Driver()
    driver.take()
    run(
        driver,
        [
            (b"PASS secret", b"-ERR Send USER first\r\n"),
            (b"USER", b"-ERR Syntax: USER name\r\n"),
            (b"USER   ", b"-ERR Syntax: USER name\r\n"),
            (b"USER john@acme.com", b"+OK Send your password\r\n"),
            (b"PASS", b"-ERR Syntax: PASS password\r\n"),
            (b"PASS ", b"-ERR Syntax: PASS password\r\n"),
            (b"STAT", b"-ERR Command not valid in this state\r\n"),
            (b"NOOP", b"-ERR Command not valid in this state\r\n"),
            (b"XYZZY", b"-ERR Unknown command\r\n"),
            (b"", b"-ERR Unknown command\r\n"),
            (b"\xff\xfe", b"-ERR Unknown command\r\n"),
            (b"LAST", b"-ERR Unknown command\r\n"),
            (b"APOP john@acme.com 0123abcd", b"-ERR APOP is not available\r\n"),
            (b"CAPA now", b"-ERR Syntax: CAPA\r\n"),
            (b"QUIT now", b"-ERR Syntax: QUIT\r\n"),
            (b"USER john@acme.com", b"+OK Send your password\r\n"),
            (b"PASS", b"-ERR Syntax: PASS password\r\n"),
            (b"PASS secret", b"+OK Logged in, 3 messages (73 octets)\r\n"),
        ],
    )


def test_user_forgotten_after_other_commands() -> None:
    driver = Driver()
    driver.take()
    run(
        driver,
        [
            (b"USER john@acme.com", b"+OK Send your password\r\n"),
            (b"CAPA", _capa(SECURE)),
            (b"XYZZY", b"-ERR Unknown command\r\n"),
            (b"PASS secret", b"-ERR Send USER first\r\n"),
        ],
    )


def _capa(config: Settings, *, stls: bool = False, plaintext: bool = True) -> bytes:
    caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
    if plaintext:
        caps += [b"USER", b"SASL PLAIN"]
    if stls:
        caps.append(b"STLS")
    return b"\r\n".join([b"+OK Capability list follows", *caps, b"EXPIRE NEVER"]) + (
        f"\r\nIMPLEMENTATION {config.implementation}\r\n.\r\n".encode()
    )


def test_bad_password_then_good() -> None:
    driver = Driver()
    driver.take()
    run(
        driver,
        [
            (b"USER john@acme.com", b"+OK Send your password\r\n"),
            (b"PASS wrong", b"-ERR [AUTH] Invalid user name or password\r\n"),
            (b"PASS secret", b"-ERR Send USER first\r\n"),
            (b"USER john@acme.com", b"+OK Send your password\r\n"),
            (b"PASS secret", b"+OK Logged in, 3 messages (73 octets)\r\n"),
        ],
    )


def test_third_failure_closes() -> None:
    driver = Driver()
    driver.take()
    for _ in range(2):
        assert driver.send(b"USER x\r\nPASS y\r\n").endswith(
            b"-ERR [AUTH] Invalid user name or password\r\n"
        )
    assert driver.send(b"USER x\r\nPASS y\r\nUSER john@acme.com\r\n") == (
        b"+OK Send your password\r\n-ERR [AUTH] Invalid login; too many failures, closing\r\n"
    )
    assert driver.closed
    assert driver.session.next_event() == Close()


def test_failures_count_across_mechanisms() -> None:
    driver = Driver(replace(SECURE, apop_enabled=True))
    driver.take()
    driver.send(b"APOP john@acme.com ffff\r\n")
    driver.send(f"AUTH PLAIN {plain('', 'x', 'y')}\r\n".encode())
    assert not driver.closed
    driver.send(b"USER a\r\nPASS b\r\n")
    assert driver.closed


def test_mailbox_in_use_is_not_a_failure() -> None:
    driver = Driver(in_use=True)
    driver.take()
    for _ in range(4):
        assert driver.send(b"USER john@acme.com\r\nPASS secret\r\n").endswith(
            b"-ERR [IN-USE] Mailbox is locked by another session\r\n"
        )
    assert not driver.closed


def test_temporary_failure() -> None:
    driver = Driver(temporary=True)
    driver.take()
    assert driver.send(b"USER john@acme.com\r\nPASS secret\r\n").endswith(
        b"-ERR [SYS/TEMP] Temporary problem, please try again later\r\n"
    )


def test_quit_in_authorization_closes_without_commit() -> None:
    driver = Driver()
    driver.take()
    assert driver.send(b"QUIT\r\n") == b"+OK mail.test POP3 server signing off\r\n"
    assert driver.events == [Close()]


# -- APOP and SASL ------------------------------------------------------------------------


def test_apop() -> None:
    driver = Driver(replace(SECURE, apop_enabled=True))
    driver.take()
    run(
        driver,
        [
            (b"APOP john@acme.com", b"-ERR Syntax: APOP name digest\r\n"),
            (b"APOP", b"-ERR Syntax: APOP name digest\r\n"),
            (b"APOP john@acme.com 0123abcd", b"+OK Logged in, 3 messages (73 octets)\r\n"),
        ],
    )
    assert driver.events == [LoginAttempt("john@acme.com", None, "0123abcd", "APOP")]


def test_apop_works_without_plaintext() -> None:
    driver = Driver(Settings(hostname="mail.test", apop_enabled=True))
    driver.take()
    assert driver.send(b"APOP john@acme.com 0123abcd\r\n").startswith(b"+OK Logged in")


def test_auth_plain_initial_response() -> None:
    driver = Driver()
    driver.take()
    reply = driver.send(f"AUTH plain {plain('', 'john@acme.com', 'secret')}\r\n".encode())
    assert reply == b"+OK Logged in, 3 messages (73 octets)\r\n"
    assert driver.events == [LoginAttempt("john@acme.com", "secret", None, "PLAIN")]


def test_auth_plain_continuation_and_authzid() -> None:
    driver = Driver()
    driver.take()
    assert driver.send(b"AUTH PLAIN\r\n") == b"+ \r\n"
    response = plain("john@acme.com", "john@acme.com", "secret")
    assert driver.send(response.encode() + b"\r\n").startswith(b"+OK Logged in")


@pytest.mark.parametrize(
    ("exchange", "reply"),
    [
        ([b"AUTH PLAIN", b"*"], b"-ERR Authentication cancelled\r\n"),
        ([b"AUTH PLAIN ="], b"-ERR Malformed SASL PLAIN response\r\n"),
        ([b"AUTH PLAIN", b"not base64!"], b"-ERR Malformed SASL PLAIN response\r\n"),
        ([b"AUTH PLAIN " + base64.b64encode(b"a\0b")], b"-ERR Malformed SASL PLAIN response\r\n"),
        (
            [b"AUTH PLAIN " + base64.b64encode(b"\0\xff\0pw")],
            b"-ERR Malformed SASL PLAIN response\r\n",
        ),
        (
            [b"AUTH PLAIN " + plain("admin", "john@acme.com", "secret").encode()],
            b"-ERR [AUTH] Authorization identity must be empty or the user name\r\n",
        ),
        ([b"AUTH CRAM-MD5"], b"-ERR Unsupported authentication mechanism\r\n"),
        ([b"AUTH"], b"+OK Supported mechanisms follow\r\nPLAIN\r\n.\r\n"),
    ],
)
def test_auth_errors(exchange: list[bytes], reply: bytes) -> None:
    driver = Driver()
    driver.take()
    out = b"".join(driver.send(line + b"\r\n") for line in exchange)
    assert out.removeprefix(b"+ \r\n") == reply
    assert not any(isinstance(e, LoginAttempt) for e in driver.events)
    assert driver.send(b"NOOP\r\n") == b"-ERR Command not valid in this state\r\n"


# -- plaintext policy and STLS ------------------------------------------------------------

INSECURE = Settings(hostname="mail.test", stls_available=True)
REFUSED = b"-ERR [AUTH] Plaintext authentication is disallowed without TLS; use STLS first\r\n"


def test_plaintext_refused_with_reason() -> None:
    driver = Driver(INSECURE)
    driver.take()
    run(
        driver,
        [
            (b"USER john@acme.com", REFUSED),
            (b"PASS secret", b"-ERR Send USER first\r\n"),
            (b"AUTH PLAIN " + plain("", "john@acme.com", "secret").encode(), REFUSED),
            (b"AUTH PLAIN", REFUSED),
            (b"AUTH", b"+OK Supported mechanisms follow\r\n.\r\n"),
            (b"CAPA", _capa(INSECURE, stls=True, plaintext=False)),
        ],
    )
    no_stls = Driver(Settings(hostname="mail.test"))
    no_stls.take()
    assert no_stls.send(b"USER x\r\n") == (
        b"-ERR [AUTH] Plaintext authentication is disallowed without TLS; use POP3 over TLS\r\n"
    )
    assert no_stls.send(b"STLS\r\n") == b"-ERR STLS is not available\r\n"


def test_stls_upgrade_discards_pipelined_plaintext() -> None:
    driver = Driver(INSECURE, answer_tls=False)
    driver.take()
    assert driver.send(b"STLS\r\nUSER injected\r\n") == b"+OK Begin TLS negotiation\r\n"
    assert driver.events == [StartTLS()]
    driver.send(b"USER also-injected\r\n")
    assert driver.session.next_event() is None
    driver.session.tls_started()
    driver.pump()
    assert driver.take() == b""
    run(
        driver,
        [
            (b"CAPA", _capa(INSECURE)),
            (b"STLS", b"-ERR Command not permitted when TLS active\r\n"),
            (b"USER john@acme.com", b"+OK Send your password\r\n"),
            (b"PASS secret", b"+OK Logged in, 3 messages (73 octets)\r\n"),
        ],
    )


def test_stls_errors() -> None:
    driver = Driver(replace(INSECURE, tls_active=True))
    driver.take()
    run(
        driver,
        [
            (b"STLS now", b"-ERR Syntax: STLS\r\n"),
            (b"STLS", b"-ERR Command not permitted when TLS active\r\n"),
            (b"USER john@acme.com", b"+OK Send your password\r\n"),
        ],
    )


def test_results_must_match_what_is_pending() -> None:
    session = Pop3Session(SECURE, timestamp_banner=BANNER)
    with pytest.raises(RuntimeError):
        session.login_result(LoginOk(()))
    with pytest.raises(RuntimeError):
        session.commit_result(True)
    with pytest.raises(RuntimeError):
        session.tls_started()


# -- CAPA -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "tail"),
    [
        (SECURE, [b"EXPIRE NEVER", b"IMPLEMENTATION Daisy"]),
        (replace(SECURE, expire_days=30), [b"EXPIRE 30", b"IMPLEMENTATION Daisy"]),
        (
            replace(SECURE, delete_after_retr=True, expire_days=30, login_delay=900),
            [b"EXPIRE 0", b"LOGIN-DELAY 900", b"IMPLEMENTATION Daisy"],
        ),
        (replace(SECURE, implementation=""), [b"EXPIRE NEVER"]),
    ],
)
def test_capa_in_both_states(config: Settings, tail: list[bytes]) -> None:
    base = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"USER"]
    lines = [b"+OK Capability list follows", *base, b"SASL PLAIN", *tail, b"."]
    expected = b"\r\n".join(lines) + b"\r\n"
    driver = Driver(replace(config, stls_available=True, tls_active=False))
    driver.take()
    assert driver.send(b"CAPA\r\n") == expected.replace(b"SASL PLAIN", b"SASL PLAIN\r\nSTLS")
    assert driver.send(b"USER john@acme.com\r\nCAPA\r\nPASS secret\r\n").startswith(
        b"+OK Send your password\r\n+OK Capability"
    )
    assert driver.send(b"CAPA\r\n") == expected


# -- transaction ----------------------------------------------------------------------------


def test_transaction_dialogue() -> None:
    driver = logged_in()
    run(
        driver,
        [
            (b"STAT", b"+OK 3 73\r\n"),
            (b"LIST", b"+OK 3 messages (73 octets)\r\n1 22\r\n2 31\r\n3 20\r\n.\r\n"),
            (b"LIST 2", b"+OK 2 31\r\n"),
            (
                b"UIDL",
                b"+OK 3 messages (73 octets)\r\n1 uid-one\r\n2 uid-two\r\n3 uid-three\r\n.\r\n",
            ),
            (b"uidl 3", b"+OK 3 uid-three\r\n"),
            (b"RETR 1", b"+OK 22 octets\r\nSubject: one\r\n\r\nhello\r\n..dot\r\n\r\n.\r\n"),
            (b"TOP 2 1", b"+OK Top of message follows\r\nSubject: two\r\nX: y\r\n\r\na\r\n.\r\n"),
            (b"TOP 2 0", b"+OK Top of message follows\r\nSubject: two\r\nX: y\r\n\r\n.\r\n"),
            (b"TOP 3 99", b"+OK Top of message follows\r\nSubject: three\r\n\r\nx\r\n.\r\n"),
            (b"DELE 2", b"+OK Message 2 deleted\r\n"),
            (b"STAT", b"+OK 2 42\r\n"),
            (b"LIST", b"+OK 2 messages (42 octets)\r\n1 22\r\n3 20\r\n.\r\n"),
            (b"UIDL", b"+OK 2 messages (42 octets)\r\n1 uid-one\r\n3 uid-three\r\n.\r\n"),
            (b"NOOP", b"+OK\r\n"),
            (b"RSET", b"+OK Maildrop has 3 messages (73 octets)\r\n"),
            (b"DELE 3", b"+OK Message 3 deleted\r\n"),
            (b"DELE 1", b"+OK Message 1 deleted\r\n"),
            (b"QUIT", b"+OK mail.test POP3 server signing off (1 left)\r\n"),
        ],
    )
    assert driver.events[-2:] == [Commit(frozenset({0, 2})), Close()]
    assert [e for e in driver.events if isinstance(e, SendMessage)] == [
        SendMessage(0, None),
        SendMessage(1, 1),
        SendMessage(1, 0),
        SendMessage(2, 99),
    ]


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"LIST 0", b"-ERR No such message"),
        (b"UIDL 0", b"-ERR No such message"),
        (b"DELE 0", b"-ERR No such message"),
        (b"RETR 0", b"-ERR No such message"),
        (b"TOP 0 1", b"-ERR No such message"),
        (b"LIST 4", b"-ERR No such message"),
        (b"RETR 99999999999999999999999999", b"-ERR No such message"),
        (b"LIST x", b"-ERR Message number must be a positive integer"),
        (b"LIST -1", b"-ERR Message number must be a positive integer"),
        (b"LIST +1", b"-ERR Message number must be a positive integer"),
        (b"LIST \xd9\xa1", b"-ERR Message number must be a positive integer"),
        (b"LIST ", b"-ERR Message number must be a positive integer"),
        (b"LIST 1 2", b"-ERR Syntax: LIST [message]"),
        (b"UIDL 1 2", b"-ERR Syntax: UIDL [message]"),
        (b"RETR", b"-ERR Syntax: RETR message"),
        (b"RETR 1 2", b"-ERR Syntax: RETR message"),
        (b"DELE", b"-ERR Syntax: DELE message"),
        (b"TOP 1", b"-ERR Syntax: TOP message lines"),
        (b"TOP 1 x", b"-ERR Syntax: TOP message lines"),
        (b"TOP 1 -1", b"-ERR Syntax: TOP message lines"),
        (b"STAT 1", b"-ERR Syntax: STAT"),
        (b"NOOP 1", b"-ERR Syntax: NOOP"),
        (b"RSET 1", b"-ERR Syntax: RSET"),
        (b"QUIT 1", b"-ERR Syntax: QUIT"),
        (b"USER john@acme.com", b"-ERR Command not valid in this state"),
        (b"PASS secret", b"-ERR Command not valid in this state"),
        (b"APOP a b", b"-ERR Command not valid in this state"),
        (b"AUTH PLAIN", b"-ERR Command not valid in this state"),
        (b"STLS", b"-ERR Command not valid in this state"),
        (b"LAST", b"-ERR Unknown command"),
    ],
)
def test_transaction_errors(command: bytes, reply: bytes) -> None:
    driver = logged_in()
    assert driver.send(command + b"\r\n") == reply + b"\r\n"
    assert driver.send(b"STAT\r\n") == b"+OK 3 73\r\n"


def test_deleted_message_errors() -> None:
    driver = logged_in()
    driver.send(b"DELE 1\r\n")
    for command in (b"DELE 1", b"RETR 1", b"TOP 1 0", b"LIST 1", b"UIDL 1"):
        assert driver.send(command + b"\r\n") == b"-ERR Message 1 already deleted\r\n"


def test_failed_commit_reports_and_closes() -> None:
    driver = logged_in(commit_ok=False)
    assert driver.send(b"DELE 1\r\nQUIT\r\nSTAT\r\n") == (
        b"+OK Message 1 deleted\r\n"
        b"-ERR [SYS/TEMP] Some deleted messages not removed, try again later\r\n"
    )
    assert driver.closed


def test_delete_after_retr() -> None:
    driver = logged_in(replace(SECURE, delete_after_retr=True))
    driver.send(b"RETR 1\r\nTOP 2 5\r\nRSET\r\nRETR 3\r\nQUIT\r\n")
    assert driver.events[-2] == Commit(frozenset({2}))


@pytest.mark.parametrize(
    ("commands", "deleted"),
    [
        (b"TOP 3 1\r\n", {2}),  # 1 body line: all of message 3
        (b"TOP 3 0\r\n", set()),  # its body line was cut off
        (b"TOP 2 2\r\n", set()),  # 2 of 3 body lines
        (b"TOP 2 99\r\nRETR 1\r\n", {0, 1}),  # -D includes -d
        (b"TOP 3 5\r\nRSET\r\n", set()),
    ],
)
def test_delete_after_top(commands: bytes, deleted: set[int]) -> None:
    """teapop -D: a message sent in full by TOP counts as read, and read ones go at QUIT."""
    driver = logged_in(replace(SECURE, delete_after_top=True))
    driver.send(commands + b"QUIT\r\n")
    assert driver.events[-2] == Commit(frozenset(deleted))


def test_top_never_counts_as_read_without_delete_after_top() -> None:
    driver = logged_in(replace(SECURE, delete_after_retr=True))
    driver.send(b"TOP 3 5\r\nQUIT\r\n")
    assert driver.events[-2] == Commit(frozenset())


def test_quit_without_deletions_still_commits_nothing() -> None:
    driver = logged_in()
    assert driver.send(b"QUIT\r\n") == b"+OK mail.test POP3 server signing off (3 left)\r\n"
    assert driver.events[-2] == Commit(frozenset())


def test_empty_maildrop() -> None:
    driver = Driver(infos=(), bodies=())
    driver.send(b"USER john@acme.com\r\nPASS secret\r\n")
    run(
        driver,
        [
            (b"STAT", b"+OK 0 0\r\n"),
            (b"LIST", b"+OK 0 messages (0 octets)\r\n.\r\n"),
            (b"UIDL", b"+OK 0 messages (0 octets)\r\n.\r\n"),
            (b"RETR 1", b"-ERR No such message\r\n"),
        ],
    )


# -- pipelining, limits, timeouts ------------------------------------------------------------


def test_pipelined_commands_wait_for_login_result() -> None:
    session = Pop3Session(SECURE, timestamp_banner=BANNER)
    session.start()
    session.data_to_send()
    session.receive_data(b"USER john@acme.com\r\nPASS secret\r\nSTAT\r\nDELE 1\r\nQUIT\r\n")
    assert session.next_event() == LoginAttempt("john@acme.com", "secret", None, "USER")
    assert session.data_to_send() == b"+OK Send your password\r\n"
    assert session.next_event() is None
    session.receive_data(b"NOOP\r\n")
    assert session.next_event() is None
    assert session.data_to_send() == b""
    session.login_result(LoginOk(INFOS))
    assert session.next_event() == Commit(frozenset({0}))
    assert session.data_to_send() == (
        b"+OK Logged in, 3 messages (73 octets)\r\n+OK 3 73\r\n+OK Message 1 deleted\r\n"
    )
    assert session.next_event() is None
    session.commit_result(True)
    assert session.next_event() == Close()
    assert session.data_to_send() == b"+OK mail.test POP3 server signing off (2 left)\r\n"


def test_pipelined_retr_streams_in_order() -> None:
    driver = logged_in()
    assert driver.send(b"RETR 3\r\nSTAT\r\nTOP 3 0\r\nNOOP\r\n") == (
        b"+OK 20 octets\r\nSubject: three\r\n\r\nx\r\n.\r\n+OK 3 73\r\n"
        b"+OK Top of message follows\r\nSubject: three\r\n\r\n.\r\n+OK\r\n"
    )


def test_byte_at_a_time_and_bare_lf() -> None:
    driver = Driver()
    out = b"".join(driver.send(bytes([b])) for b in b"USER john@acme.com\nPASS secret\r\nSTAT\n")
    assert out == (
        b"+OK mail.test POP3 server ready\r\n+OK Send your password\r\n"
        b"+OK Logged in, 3 messages (73 octets)\r\n+OK 3 73\r\n"
    )


def test_long_lines_are_refused_whole() -> None:
    driver = logged_in(replace(SECURE, max_line_length=64))
    long = b"LIST " + b"1" * 100
    assert driver.send(long + b"\r\nSTAT\r\n") == b"-ERR Line too long\r\n+OK 3 73\r\n"
    assert driver.send(b"NOOP " + b"x" * 200) == b""
    assert driver.send(b"x" * 200) == b""
    assert driver.send(b"\r\nNOOP\r\n") == b"-ERR Line too long\r\n+OK\r\n"
    assert driver.send(b"N" * 62 + b"\r\n") == b"-ERR Unknown command\r\n"
    assert driver.send(b"N" * 63 + b"\r\n") == b"-ERR Line too long\r\n"


def test_sasl_response_has_its_own_limit() -> None:
    config = replace(SECURE, max_line_length=64, max_auth_line_length=200)
    driver = Driver(config)
    driver.take()
    response = plain("", "john@acme.com", "secret")
    padded = plain("", "john@acme.com", "x" * 100)
    assert driver.send(b"AUTH PLAIN\r\n" + padded.encode() + b"\r\n").endswith(
        b"-ERR [AUTH] Invalid user name or password\r\n"
    )
    assert driver.send(b"AUTH PLAIN\r\n" + b"A" * 300 + b"\r\nNOOP\r\n") == (
        b"+ \r\n-ERR Line too long\r\n-ERR Command not valid in this state\r\n"
    )
    assert driver.send(b"AUTH PLAIN\r\n" + response.encode() + b"\r\n").endswith(
        b"+OK Logged in, 3 messages (73 octets)\r\n"
    )


def test_too_much_pipelined_input_closes() -> None:
    session = Pop3Session(SECURE, timestamp_banner=BANNER)
    session.receive_data(b"USER john@acme.com\r\nPASS secret\r\n")
    assert isinstance(session.next_event(), LoginAttempt)
    session.receive_data(b"NOOP\r\n" * (MAX_BUFFERED // 6 + 1))
    session.receive_data(b"NOOP\r\n")
    session.login_result(LoginOk(INFOS))
    assert session.next_event() == Close()
    assert session.data_to_send().endswith(b"-ERR Too much pipelined input\r\n")


def test_timeout_closes_without_commit() -> None:
    driver = logged_in()
    driver.send(b"DELE 1\r\n")
    driver.session.timeout()
    driver.pump()
    assert driver.take() == b"-ERR Autologout; idle for too long\r\n"
    assert driver.closed
    assert not any(isinstance(e, Commit) for e in driver.events)
    driver.session.timeout()
    assert driver.session.data_to_send() == b""


def test_disconnect_closes_without_commit() -> None:
    driver = logged_in()
    driver.send(b"DELE 1\r\n")
    assert driver.send(b"") == b""
    assert driver.closed
    assert not any(isinstance(e, Commit) for e in driver.events)


def test_result_after_close_is_dropped() -> None:
    session = Pop3Session(SECURE, timestamp_banner=BANNER)
    session.receive_data(b"USER john@acme.com\r\nPASS secret\r\n")
    session.next_event()
    session.timeout()
    session.data_to_send()
    session.login_result(LoginOk(INFOS))
    assert session.data_to_send() == b""
    assert session.next_event() == Close()


# -- B1 on the wire (SPEC §5.8) ---------------------------------------------------------------

B1 = (
    b"From sender@example.com  Thu Nov 26 09:56:38 2026\nSubject: one\nFrom: a@example.com\n"
    b"\nbody line\n>From here is a line\n.dot line\n\nFrom other@example.com  Mon Jan  5 10:00:00"
    b" 2004\nSubject: two\nStatus: RO\nX-UIDL: abc123\n\nline1\nline2\nline3\n\n"
)


def test_b1_over_the_wire(tmp_path: Path) -> None:
    path = tmp_path / "b1"
    path.write_bytes(B1)
    view = open_mbox_view(str(path), ViewOptions())
    try:
        bodies = [list(view.lines(i)) for i in range(len(view.messages))]
        driver = logged_in_with(view.messages, bodies)
        run(
            driver,
            [
                (b"STAT", b"+OK 2 150\r\n"),
                (b"LIST", b"+OK 2 messages (150 octets)\r\n1 83\r\n2 67\r\n.\r\n"),
                (
                    b"UIDL",
                    b"+OK 2 messages (150 octets)\r\n1 a38f70afb6b3cbb4ae26a78cf7d849de\r\n"
                    b"2 44076b8841d80e83098610a829cd01c3\r\n.\r\n",
                ),
                (
                    b"RETR 1",
                    b"+OK 83 octets\r\nSubject: one\r\nFrom: a@example.com\r\n\r\nbody line\r\n"
                    b">From here is a line\r\n..dot line\r\n\r\n.\r\n",
                ),
                (
                    b"TOP 1 0",
                    b"+OK Top of message follows\r\n"
                    b"Subject: one\r\nFrom: a@example.com\r\n\r\n.\r\n",
                ),
                (b"LIST 0", b"-ERR No such message\r\n"),
                (b"UIDL 0", b"-ERR No such message\r\n"),
                (b"LIST 3", b"-ERR No such message\r\n"),
            ],
        )
        retr1 = b"Subject: one\r\nFrom: a@example.com\r\n\r\nbody line\r\n>From here is a line\r\n"
        assert len(retr1 + b".dot line\r\n\r\n") == 83
    finally:
        view.close()


def logged_in_with(infos: Sequence[MessageInfo], bodies: Sequence[list[bytes]]) -> Driver:
    driver = Driver(infos=infos, bodies=bodies)
    driver.send(b"USER john@acme.com\r\nPASS secret\r\n")
    return driver


# -- format_message -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "top", "wire"),
    [
        ([b"A: b\n", b"\n", b"x\n"], None, b"A: b\r\n\r\nx\r\n"),
        ([b"A: b\r\n", b"\r\n", b"x\r\n"], None, b"A: b\r\n\r\nx\r\n"),
        ([b"a\rb\n"], None, b"a\rb\r\n"),
        ([b".\n", b"..x\n", b" .y\n"], None, b"..\r\n...x\r\n .y\r\n"),
        ([b"no end"], None, b"no end\r\n"),
        ([b"A: b\n", b"\n", b"last"], None, b"A: b\r\n\r\nlast\r\n"),
        ([b"A: b", b"c\n", b".d", b".e\n"], None, b"A: bc\r\n..d.e\r\n"),
        ([], None, b""),
        ([b"A: b\n", b"C: d\n"], 0, b"A: b\r\nC: d\r\n"),
        ([b"A: b\n", b"\n", b"1\n", b"2\n", b"3\n"], 2, b"A: b\r\n\r\n1\r\n2\r\n"),
        ([b"A: b\n", b"\n", b"\n", b"2\n"], 1, b"A: b\r\n\r\n\r\n"),
        ([b"A: b\n", b"\r\n", b"1", b"1\n", b"2\n"], 1, b"A: b\r\n\r\n11\r\n"),
        ([b"A: b\n", b"\n"], 0, b"A: b\r\n\r\n"),
    ],
)
def test_format_message(lines: list[bytes], top: int | None, wire: bytes) -> None:
    assert b"".join(format_message(lines, top)) == wire


def test_format_message_streams_in_blocks() -> None:
    lines = [b"x" * 1000 + b"\n"] * 500
    blocks = list(format_message(lines))
    assert len(blocks) > 1
    assert b"".join(blocks) == (b"x" * 1000 + b"\r\n") * 500


def test_format_message_stops_reading_after_top() -> None:
    consumed = []

    def lines() -> Iterator[bytes]:
        for i, line in enumerate([b"A: b\n", b"\n", b"1\n", b"2\n", b"3\n"]):
            consumed.append(i)
            yield line

    assert b"".join(format_message(lines(), 1)) == b"A: b\r\n\r\n1\r\n"
    assert consumed == [0, 1, 2, 3]


# -- fuzz -----------------------------------------------------------------------------------

_words = st.sampled_from(
    [b"USER john@acme.com", b"PASS secret", b"PASS x", b"APOP john@acme.com 0123abcd", b"AUTH",
     b"AUTH PLAIN", b"AUTH PLAIN =", b"*", b"STLS", b"CAPA", b"STAT", b"LIST", b"LIST 1",
     b"UIDL 2", b"RETR 3", b"TOP 1 2", b"DELE 1", b"RSET", b"NOOP", b"QUIT", b"LIST 0"]
)  # fmt: skip
_input = st.lists(
    st.one_of(
        _words.map(lambda w: w + b"\r\n"),
        st.binary(min_size=1, max_size=40),
        st.binary(max_size=700).map(lambda b: b + b"\n"),
    ),
    max_size=25,
)


@settings(max_examples=300)
@given(
    _input,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_fuzz_never_raises_and_replies_are_lines(
    chunks: list[bytes], plaintext: bool, stls: bool, apop: bool, commit_ok: bool
) -> None:
    config = Settings(
        hostname="mail.test",
        allow_plaintext=plaintext,
        stls_available=stls,
        apop_enabled=apop,
        max_line_length=128,
        max_auth_line_length=256,
    )
    driver = Driver(config, commit_ok=commit_ok)
    for chunk in chunks:
        driver.send(chunk)
    out = bytes(driver.take())
    assert out == b"" or out.endswith(b"\r\n")


@settings(max_examples=100)
@given(_input, st.integers(1, 7))
def test_fuzz_split_points_do_not_matter(chunks: list[bytes], step: int) -> None:
    data = b"".join(chunks)
    whole = Driver(replace(SECURE, max_line_length=128))
    if data:
        whole.send(data)
    pieces = Driver(replace(SECURE, max_line_length=128))
    for i in range(0, len(data), step):
        pieces.send(data[i : i + step])
    assert pieces.take() == whole.take()
    assert pieces.events == whole.events
