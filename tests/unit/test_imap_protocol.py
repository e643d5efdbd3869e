"""The sans-I/O IMAP session: dialogues for states, literals, logins, IDLE and bad input."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from daisymail.imap.protocol import (
    Close,
    Event,
    Execute,
    IdleStart,
    ImapSession,
    LoginAttempt,
    Settings,
    StartTLS,
    State,
)


def session(**kw: object) -> ImapSession:
    s = ImapSession(Settings(hostname="mail.test", **kw))  # type: ignore[arg-type]
    s.start()
    s.data_to_send()
    return s


def talk(s: ImapSession, data: bytes) -> tuple[bytes, list[Event]]:
    s.receive_data(data)
    events = []
    while (ev := s.next_event()) is not None:
        events.append(ev)
        if not isinstance(ev, Close):
            break
    return s.data_to_send(), events


def logged_in() -> ImapSession:
    s = session(allow_plaintext=True)
    _, events = talk(s, b"a LOGIN u p\r\n")
    assert isinstance(events[0], LoginAttempt)
    s.login_result(True)
    s.data_to_send()
    return s


def test_greeting_lists_capabilities() -> None:
    s = ImapSession(Settings(hostname="mail.test"))
    s.start()
    out = s.data_to_send()
    assert out.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b"STARTTLS" in out and b"LOGINDISABLED" in out and b"AUTH=PLAIN" not in out


def test_plaintext_login_refused_before_tls() -> None:
    s = session()
    out, events = talk(s, b"a LOGIN user pass\r\n")
    assert out == b"a NO [PRIVACYREQUIRED] use STARTTLS before logging in\r\n"
    assert events == []
    out, events = talk(s, b"b AUTHENTICATE PLAIN AHUAcA==\r\n")
    assert b"b NO [PRIVACYREQUIRED]" in out and events == []


def test_starttls_then_login_allowed() -> None:
    s = session()
    out, events = talk(s, b"a STARTTLS\r\n")
    assert out == b"a OK begin TLS negotiation now\r\n" and events == [StartTLS()]
    s.tls_started()
    out, _ = talk(s, b"b CAPABILITY\r\n")
    assert b"AUTH=PLAIN" in out and b"STARTTLS" not in out and b"LOGINDISABLED" not in out
    _, events = talk(s, b"c LOGIN user pass\r\n")
    assert events == [LoginAttempt("c", "user", "pass", "LOGIN")]


def test_login_success_and_failure_replies() -> None:
    s = session(allow_plaintext=True)
    talk(s, b"a LOGIN u wrong\r\n")
    s.login_result(False)
    assert s.data_to_send() == b"a NO [AUTHENTICATIONFAILED] invalid credentials\r\n"
    assert s.state is State.NOT_AUTHENTICATED
    talk(s, b'b LOGIN "u@d" {2+}\r\npw\r\n')
    s.login_result(True)
    assert s.data_to_send().startswith(b"b OK [CAPABILITY IMAP4rev1 ")
    assert s.state is State.AUTHENTICATED


def test_sync_literal_gets_continuation() -> None:
    s = session(allow_plaintext=True)
    out, events = talk(s, b"a LOGIN {4}\r\n")
    assert out == b"+ Ready for literal data\r\n" and events == []
    out, events = talk(s, b"user {4}\r\n")
    assert out == b"+ Ready for literal data\r\n"
    out, events = talk(s, b"pass\r\n")
    assert events == [LoginAttempt("a", "user", "pass", "LOGIN")]


def test_literal_too_big_is_refused_and_session_continues() -> None:
    s = logged_in()
    s.settings.max_literal = 100
    out, events = talk(s, b"a APPEND INBOX {101}\r\n")
    assert out == b"a BAD [TOOBIG] literal too big\r\n" and events == []
    out, _ = talk(s, b"b NOOP\r\n")
    assert out == b"b OK NOOP completed\r\n"


def test_big_literal_before_login_refused() -> None:
    s = session(allow_plaintext=True)
    out, _ = talk(s, b"a LOGIN {100000}\r\n")
    assert b"a BAD [TOOBIG]" in out
    out, events = talk(s, b"a LOGIN {100000+}\r\n")
    assert b"* BYE literal too big" in out and events == [Close()]


def test_commands_checked_against_state() -> None:
    s = session(allow_plaintext=True)
    out, events = talk(s, b"a SELECT INBOX\r\n")
    assert out == b"a BAD SELECT is not allowed not authenticated\r\n" and events == []
    s = logged_in()
    out, events = talk(s, b"b FETCH 1 FLAGS\r\n")
    assert b"b BAD FETCH is not allowed authenticated" in out
    _, events = talk(s, b"c SELECT INBOX\r\n")
    assert events == [Execute("c", "SELECT", False, ["INBOX"], State.AUTHENTICATED)]
    s.executed(b"c OK [READ-WRITE] done\r\n", selected=True)
    assert s.state is State.SELECTED
    _, events = talk(s, b"e CHECK\r\n")
    assert events == [Execute("e", "CHECK", False, [], State.SELECTED)]
    s.executed(b"e OK CHECK completed\r\n")
    _, events = talk(s, b"d UID FETCH 1:* FLAGS\r\n")
    assert events == [Execute("d", "FETCH", True, ["1:*", "FLAGS"], State.SELECTED)]


def test_pipelined_commands_answer_in_order() -> None:
    s = logged_in()
    s.receive_data(b'a LIST "" *\r\nb CAPABILITY\r\n')
    ev = s.next_event()
    assert isinstance(ev, Execute) and ev.name == "LIST"
    assert s.next_event() is None  # b waits for a's answer
    s.executed(b"a OK LIST completed\r\n")
    assert s.next_event() is None
    out = s.data_to_send()
    assert out.startswith(b"a OK LIST completed\r\n* CAPABILITY ")


def test_authenticate_plain_with_and_without_initial_response() -> None:
    s = session(allow_plaintext=True)
    ir = base64.b64encode(b"\0user\0pw").decode()
    _, events = talk(s, f"a AUTHENTICATE PLAIN {ir}\r\n".encode())
    assert events == [LoginAttempt("a", "user", "pw", "PLAIN")]
    s.login_result(False)
    s.data_to_send()
    out, events = talk(s, b"b AUTHENTICATE PLAIN\r\n")
    assert out == b"+ \r\n" and events == []
    _, events = talk(s, ir.encode() + b"\r\n")
    assert events == [LoginAttempt("b", "user", "pw", "PLAIN")]
    s.login_result(False)
    s.data_to_send()
    talk(s, b"c AUTHENTICATE PLAIN\r\n")
    out, _ = talk(s, b"*\r\n")
    assert out == b"c BAD authentication cancelled\r\n"
    out, _ = talk(s, b"d AUTHENTICATE PLAIN !!!\r\n")
    assert out == b"d BAD malformed SASL response\r\n"
    out, _ = talk(s, b"e AUTHENTICATE CRAM-MD5\r\n")
    assert out == b"e NO unsupported mechanism\r\n"


def test_idle_until_done() -> None:
    s = logged_in()
    _, events = talk(s, b"i IDLE\r\n")
    assert events == [IdleStart("i")]
    s.idle_started()
    assert s.idling and s.data_to_send() == b"+ idling\r\n"
    s.updates(b"* 3 EXISTS\r\n")
    out, _ = talk(s, b"DONE\r\n")
    assert out == b"* 3 EXISTS\r\ni OK IDLE terminated\r\n"
    assert not s.idling


def test_malformed_commands_get_bad_and_too_many_close() -> None:
    s = session(allow_plaintext=True, max_errors=3)
    out, _ = talk(s, b"a FROB\r\n")
    assert out == b"a BAD unknown command FROB\r\n"
    out, _ = talk(s, b'b LOGIN "unterminated\r\n')
    assert out == b"b BAD unterminated quoted string\r\n"
    out, events = talk(s, b"c NOOP extra\r\n")
    assert out.endswith(b"* BYE too many errors\r\n") and events == [Close()]


def test_line_too_long_closes() -> None:
    s = session(max_line=100)
    out, events = talk(s, b"a " + b"x" * 200)
    assert out == b"* BYE line too long\r\n" and events == [Close()]


def test_logout_and_eof() -> None:
    s = session()
    out, events = talk(s, b"a LOGOUT\r\n")
    assert out == b"* BYE logging out\r\na OK LOGOUT completed\r\n" and events == [Close()]
    s = session()
    _, events = talk(s, b"")
    assert events == [Close()]


def test_id_enable_namespace() -> None:
    s = logged_in()
    out, _ = talk(s, b'a ID ("name" "test")\r\n')
    assert out == b'* ID ("name" "Daisy")\r\na OK ID completed\r\n'
    out, _ = talk(s, b"b NAMESPACE\r\n")
    assert out == b'* NAMESPACE (("" ".")) NIL NIL\r\nb OK NAMESPACE completed\r\n'
    _, events = talk(s, b"c ENABLE CONDSTORE\r\n")
    assert events == [Execute("c", "ENABLE", False, ["CONDSTORE"], State.AUTHENTICATED)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_random_input_never_raises(chunks: list[bytes]) -> None:
    s = session(allow_plaintext=True)
    for chunk in chunks:
        s.receive_data(chunk)
        while (ev := s.next_event()) is not None:
            if isinstance(ev, LoginAttempt):
                s.login_result(False)
            elif isinstance(ev, StartTLS):
                s.tls_started()
            elif isinstance(ev, Execute):
                s.executed(ev.tag.encode() + b" OK done\r\n")
            elif isinstance(ev, IdleStart):
                s.idle_started()
            elif isinstance(ev, Close):
                return
        s.data_to_send()
