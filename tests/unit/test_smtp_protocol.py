import base64
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daisymail.smtp.data import CrlfDecoder, DotDecoder
from daisymail.smtp.params import (
    CommandError,
    parse_mail,
    parse_path,
    parse_rcpt,
    xtext_decode,
    xtext_encode,
)
from daisymail.smtp.protocol import (
    AuthAttempt,
    Envelope,
    Event,
    MessageAborted,
    MessageComplete,
    MessageData,
    MessageStarted,
    RcptDecision,
    ServerSession,
    SessionInfo,
    Settings,
    StartTLS,
)
from daisymail.smtp.replies import Reply, reply

# ---- harness ---------------------------------------------------------------------------

QUEUED = reply(250, "2.0.0", "Ok: queued")
USERS = {"alice": "secret", "bob@example.org": "hunter2"}


class Policy:
    """Refuses a few well-known names so dialogues can show every kind of answer."""

    def __init__(self) -> None:
        self.seen_sessions: list[SessionInfo] = []

    def check_sender(
        self, session: SessionInfo, sender: str, params: dict[str, str]
    ) -> Reply | None:
        self.seen_sessions.append(session)
        if sender == "spammer@bad.test":
            return reply(550, "5.7.1", "Sender refused")
        return None

    def check_recipient(
        self, session: SessionInfo, envelope: Envelope, address: str, params: dict[str, str]
    ) -> RcptDecision:
        local = address.partition("@")[0]
        if local == "unknown":
            return RcptDecision(reply(550, "5.1.1", f"<{address}>... User unknown"), False)
        if local == "full":
            return RcptDecision(reply(450, "4.2.2", f"<{address}>... mailbox full"), False)
        return RcptDecision(
            reply(250, "2.1.5", f"<{address}>... Recipient ok"), True, f"box:{local}"
        )


def make_settings(**overrides: object) -> Settings:
    return replace(Settings(hostname="mx.test"), **overrides)  # type: ignore[arg-type]


class Client:
    """Feeds bytes, answers the session's events like a cooperative server would."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tls: bool = False,
        answer: bool = True,
        message_reply: Reply = QUEUED,
    ) -> None:
        self.info = SessionInfo("192.0.2.1", "S1", tls=tls)
        self.session = ServerSession(settings or make_settings(), Policy(), self.info)
        self.answer = answer
        self.message_reply = message_reply
        self.events: list[Event] = []
        self.session.start()
        self.greeting = self.session.data_to_send()

    def send(self, data: bytes) -> list[str]:
        if data:
            self.session.receive_data(data)
        return self.pump()

    def eof(self) -> list[str]:
        self.session.receive_data(b"")
        return self.pump()

    def pump(self) -> list[str]:
        while (event := self.session.next_event()) is not None:
            self.events.append(event)
            if not self.answer:
                continue
            if isinstance(event, MessageComplete):
                self.session.message_result(self.message_reply)
            elif isinstance(event, AuthAttempt):
                ok = USERS.get(event.username) == event.password
                self.session.auth_result(ok, event.username if ok else None)
            elif isinstance(event, StartTLS):
                self.session.tls_started()
        return final_lines(self.session.data_to_send())

    def body(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, MessageData))

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def completed(self) -> list[Envelope]:
        return [e.envelope for e in self.events if isinstance(e, MessageComplete)]


REPLY_LINE = re.compile(rb"(\d{3})([ -])[^\r\n]*\r\n")


def final_lines(out: bytes) -> list[str]:
    """The last line of each reply; asserts the output is well-formed on the way."""
    lines = re.findall(rb"[^\n]*\n", out)
    assert b"".join(lines) == out, out
    finals = []
    for line in lines:
        match = REPLY_LINE.fullmatch(line)
        assert match is not None, line
        if match.group(2) == b" ":
            finals.append(line[:-2].decode("utf-8"))
    return finals


def codes(lines: list[str]) -> list[str]:
    """`250 2.1.0`-style code pairs, or just the code when there is no enhanced code."""
    out = []
    for line in lines:
        words = line.split(" ")
        if len(words) > 1 and re.fullmatch(r"[245]\.\d+\.\d+", words[1]):
            out.append(f"{words[0]} {words[1]}")
        else:
            out.append(words[0])
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def plain(user: bytes, password: bytes, authzid: bytes = b"") -> bytes:
    """A PLAIN message, base64-encoded, as bytes ready to send."""
    return base64.b64encode(b"\0".join((authzid, user, password)))


def auth_plain(user: bytes, password: bytes) -> bytes:
    return b"AUTH PLAIN " + plain(user, password) + b"\r\n"


def ready(client: Client | None = None) -> Client:
    client = client or Client()
    client.send(b"EHLO client.test\r\n")
    return client


def in_transaction(client: Client | None = None) -> Client:
    client = ready(client)
    assert codes(client.send(b"MAIL FROM:<s@client.test>\r\nRCPT TO:<u@mx.test>\r\n")) == [
        "250 2.1.0",
        "250 2.1.5",
    ]
    return client


# ---- replies ---------------------------------------------------------------------------


def test_reply_encoding() -> None:
    assert reply(250, "2.0.0", "Ok").encode() == b"250 2.0.0 Ok\r\n"
    assert Reply(250, None, ("mx", "PIPELINING", "DSN")).encode() == (
        b"250-mx\r\n250-PIPELINING\r\n250 DSN\r\n"
    )
    assert Reply(550, "5.7.1", ("a", "b")).encode() == b"550-5.7.1 a\r\n550 5.7.1 b\r\n"
    assert reply(334, None, "").encode() == b"334 \r\n"
    assert reply(550, "5.7.1", "evil\r\n250 ok").encode() == b"550 5.7.1 evil  250 ok\r\n"
    assert Reply(221, "2.0.0", ()).encode() == b"221 2.0.0\r\n"


@pytest.mark.parametrize(
    ("code", "enhanced"), [(99, None), (600, None), (250, "5.0.0"), (354, "2.0.0"), (250, "2.0")]
)
def test_reply_rejects_nonsense(code: int, enhanced: str | None) -> None:
    with pytest.raises(ValueError):
        Reply(code, enhanced, ("x",))


# ---- greeting and EHLO -----------------------------------------------------------------


def test_greeting_has_no_enhanced_code() -> None:
    assert Client().greeting == b"220 mx.test ESMTP Daisy\r\n"


def ehlo_keywords(client: Client) -> list[str]:
    client.session.receive_data(b"EHLO client.test\r\n")
    assert client.session.next_event() is None
    lines = client.session.data_to_send().decode().split("\r\n")[:-1]
    assert lines[0] == "250-mx.test"
    return [line[4:] for line in lines[1:]]


def test_ehlo_lists_extensions() -> None:
    assert ehlo_keywords(Client()) == [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "DSN",
    ]


def test_ehlo_starttls_and_auth_depend_on_tls() -> None:
    settings = make_settings(starttls_available=True, auth_mechanisms=("PLAIN", "LOGIN"))
    plain = ehlo_keywords(Client(settings))
    assert "STARTTLS" in plain
    assert not any(k.startswith("AUTH") for k in plain)
    secure = ehlo_keywords(Client(settings, tls=True))
    assert "STARTTLS" not in secure
    assert "AUTH PLAIN LOGIN" in secure


def test_ehlo_auth_without_tls_when_allowed() -> None:
    keywords = ehlo_keywords(
        Client(make_settings(auth_mechanisms=("login",), auth_requires_tls=False))
    )
    assert "AUTH LOGIN" in keywords


def test_ehlo_leaves_out_disabled_extensions() -> None:
    settings = make_settings(
        chunking=False, dsn=False, smtputf8=False, eightbitmime=False, max_message_size=1000
    )
    assert ehlo_keywords(Client(settings)) == ["PIPELINING", "SIZE 1000", "ENHANCEDSTATUSCODES"]


def test_helo_gives_plain_smtp_without_parameters() -> None:
    client = Client()
    assert client.send(b"HELO client.test\r\n") == ["250 mx.test"]
    assert codes(client.send(b"MAIL FROM:<a@b.test> SIZE=10\r\n")) == ["555 5.5.4"]
    assert codes(client.send(b"MAIL FROM:<a@b.test>\r\n")) == ["250 2.1.0"]
    assert codes(client.send(b"BDAT 3\r\n")) == ["500 5.5.1"]


@pytest.mark.parametrize("line", [b"EHLO\r\n", b"EHLO \r\n", b"EHLO a b\r\n", b"HELO\r\n"])
def test_greeting_needs_one_name(line: bytes) -> None:
    assert codes(Client().send(line)) == ["501 5.5.4"]


def test_ehlo_records_client_name() -> None:
    client = ready()
    assert client.info.client_name == "client.test"


# ---- sequencing ------------------------------------------------------------------------

SEQUENCE_CASES = [
    # (setup lines, command, expected codes)
    (b"", b"MAIL FROM:<a@b.test>", ["503 5.5.1"]),
    (b"EHLO c\r\n", b"RCPT TO:<u@mx.test>", ["503 5.5.1"]),
    (b"EHLO c\r\n", b"DATA", ["503 5.5.1"]),
    (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n", b"DATA", ["554 5.5.1"]),
    (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n", b"MAIL FROM:<a@b.test>", ["503 5.5.1"]),
    (b"EHLO c\r\n", b"FROB", ["500 5.5.1"]),
    (b"", b"EXPN staff", ["500 5.5.1"]),
    (b"", b"NOOP", ["250 2.0.0"]),
    (b"", b"NOOP anything", ["250 2.0.0"]),
    (b"", b"RSET", ["250 2.0.0"]),
    (b"", b"RSET now", ["501 5.5.4"]),
    (b"", b"VRFY root", ["252 2.0.0"]),
    (b"", b"VRFY", ["501 5.5.4"]),
    (b"", b"HELP", ["214 2.0.0"]),
    (b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@mx.test>\r\n", b"DATA now", ["501 5.5.4"]),
    (b"", b"QUIT now", ["501 5.5.4"]),
    (b"", b"mail from:<a@b.test>", ["503 5.5.1"]),
    (b"EHLO c\r\n", b"mail from:<a@b.test>", ["250 2.1.0"]),
    (b"EHLO c\r\n", b"MAIL FROM:<spammer@bad.test>", ["550 5.7.1"]),
]


@pytest.mark.parametrize(("setup", "command", "expected"), SEQUENCE_CASES)
def test_sequencing(setup: bytes, command: bytes, expected: list[str]) -> None:
    client = Client()
    client.send(setup)
    assert codes(client.send(command + b"\r\n")) == expected


def test_refused_sender_starts_no_transaction() -> None:
    client = ready()
    client.send(b"MAIL FROM:<spammer@bad.test>\r\n")
    assert codes(client.send(b"RCPT TO:<u@mx.test>\r\n")) == ["503 5.5.1"]


def test_rset_and_ehlo_end_the_transaction() -> None:
    for command in (b"RSET\r\n", b"EHLO again\r\n"):
        client = in_transaction()
        client.send(command)
        assert codes(client.send(b"DATA\r\n")) == ["503 5.5.1"]
        assert codes(client.send(b"MAIL FROM:<>\r\n")) == ["250 2.1.0"]


def test_quit() -> None:
    client = ready()
    assert client.send(b"QUIT\r\nNOOP\r\n") == ["221 2.0.0 mx.test Bye"]
    assert client.kinds() == ["Close"]
    assert client.session.closed
    assert client.send(b"NOOP\r\n") == []


# ---- pipelining ------------------------------------------------------------------------


def test_pipelined_transaction_in_one_packet() -> None:
    client = Client()
    out = client.send(
        b"EHLO client.test\r\n"
        b"MAIL FROM:<s@client.test> BODY=8BITMIME\r\n"
        b"RCPT TO:<a@mx.test>\r\n"
        b"RCPT TO:<unknown@mx.test>\r\n"
        b"RCPT TO:<full@mx.test>\r\n"
        b"RCPT TO:<b@mx.test>\r\n"
        b"DATA\r\n"
        b"Subject: hi\r\n\r\nbody\r\n.\r\n"
        b"QUIT\r\n"
    )
    assert codes(out) == [
        "250",
        "250 2.1.0",
        "250 2.1.5",
        "550 5.1.1",
        "450 4.2.2",
        "250 2.1.5",
        "354",
        "250 2.0.0",
        "221 2.0.0",
    ]
    assert client.kinds() == [
        "MessageStarted",
        "MessageData",
        "MessageComplete",
        "Close",
    ]
    (envelope,) = client.completed()
    assert [r.address for r in envelope.recipients] == ["a@mx.test", "b@mx.test"]
    assert [r.target for r in envelope.recipients] == ["box:a", "box:b"]
    assert envelope.body_type == "8BITMIME"
    assert client.body() == b"Subject: hi\n\nbody\n"
    assert envelope.size == len(b"Subject: hi\r\n\r\nbody\r\n")


def test_pipelined_input_waits_for_message_result() -> None:
    client = in_transaction(Client(answer=False))
    client.send(b"DATA\r\n")
    out = client.send(b"hello\r\n.\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<u@mx.test>\r\n")
    assert codes(out) == []
    assert client.kinds()[-1] == "MessageComplete"
    assert client.session.awaiting_result
    assert client.session.next_event() is None
    assert client.session.data_to_send() == b""
    client.session.message_result(QUEUED)
    assert codes(client.pump()) == ["250 2.0.0", "250 2.1.0", "250 2.1.5"]


def test_temporary_failure_from_the_store_ends_the_transaction() -> None:
    client = in_transaction(Client(message_reply=reply(451, "4.3.0", "Try again later")))
    out = client.send(b"DATA\r\nx\r\n.\r\nDATA\r\n")
    assert codes(out) == ["354", "451 4.3.0", "503 5.5.1"]


def test_session_can_carry_several_transactions() -> None:
    client = in_transaction()
    client.send(b"DATA\r\none\r\n.\r\n")
    client.send(b"MAIL FROM:<>\r\nRCPT TO:<v@mx.test>\r\nDATA\r\ntwo\r\n.\r\n")
    first, second = client.completed()
    assert first.sender == "s@client.test"
    assert second.sender == ""
    assert [r.address for r in second.recipients] == ["v@mx.test"]


# ---- command lines ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"NOOP\n",
        b"NOOP\rNOOP\r\n",
        b"NO\rOP\r\n",
        b"NOOP\r\r\n",
    ],
)
def test_bare_cr_or_lf_in_command_is_refused(data: bytes) -> None:
    client = ready()
    assert client.send(data + b"RSET\r\n") == [
        "500 5.5.2 Bare CR or LF in command line; use CRLF",
        "250 2.0.0 Ok",
    ]


@pytest.mark.parametrize(
    "data", [b"NOOP\x00\r\n", b"NO\tOP\r\n", b"NOOP \xff\xfe\r\n", b"\x7f\r\n"]
)
def test_control_and_invalid_bytes_are_refused(data: bytes) -> None:
    assert codes(Client().send(data)) == ["500 5.5.2"]


def test_utf8_in_a_command_is_fine() -> None:
    assert codes(Client().send("EHLO bücher.test\r\n".encode())) == ["250"]


def test_line_too_long_is_refused_and_skipped() -> None:
    client = ready(Client(make_settings(max_line_length=512)))
    long_line = b"NOOP " + b"x" * 600 + b"\r\n"
    assert codes(client.send(long_line[:300])) == []
    assert codes(client.send(long_line[300:] + b"RSET\r\n")) == ["500 5.5.2", "250 2.0.0"]


def test_line_too_long_discarding_spans_many_packets() -> None:
    client = ready(Client(make_settings(max_line_length=512)))
    assert codes(client.send(b"x" * 1000)) == ["500 5.5.2"]
    for _ in range(5):
        assert client.send(b"y" * 1000) == []
    assert codes(client.send(b"zzz\r\nNOOP\r\n")) == ["250 2.0.0"]


def test_line_at_the_limit_is_accepted() -> None:
    client = ready(Client(make_settings(max_line_length=512)))
    exact = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
    assert len(exact) == 512
    assert codes(client.send(exact)) == ["250 2.0.0"]
    assert codes(client.send(b"NOOP " + b"x" * (512 - 6) + b"\r\n")) == ["500 5.5.2"]


def test_command_split_over_packets() -> None:
    client = Client()
    for byte in b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r":
        assert client.send(bytes([byte])) == [] or byte == ord("\n")
    assert codes(client.send(b"\n")) == ["250 2.1.0"]


def test_too_many_errors_closes_with_421() -> None:
    client = Client(make_settings(max_errors=3))
    out = client.send(b"FROB\r\nFROB\r\nFROB\r\nNOOP\r\n")
    assert codes(out) == ["500 5.5.1", "500 5.5.1", "500 5.5.1", "421 4.7.0"]
    assert client.kinds() == ["Close"]


def test_policy_refusals_are_not_errors() -> None:
    client = in_transaction(Client(make_settings(max_errors=2)))
    out = client.send(b"RCPT TO:<unknown@mx.test>\r\n" * 5)
    assert codes(out) == ["550 5.1.1"] * 5
    assert not client.session.closed


# ---- MAIL and RCPT arguments -----------------------------------------------------------

ALL = frozenset({"SIZE", "8BITMIME", "SMTPUTF8", "DSN", "AUTH"})

PATHS_OK = [
    ("FROM:<user@example.org>", "user@example.org"),
    ("FROM: <user@example.org>", "user@example.org"),
    ("from:<User@Example.ORG>", "User@Example.ORG"),
    ("FROM:<>", ""),
    ("FROM:<@relay.test:user@example.org>", "user@example.org"),
    ("FROM:<@a.test,@b.test:user@example.org>", "user@example.org"),
    ('FROM:<"john doe"@example.org>', '"john doe"@example.org'),
    ('FROM:<"a>b@c"@example.org>', '"a>b@c"@example.org'),
    ('FROM:<"a\\"b"@example.org>', '"a\\"b"@example.org'),
    ("FROM:<first.last+tag@sub.example.org>", "first.last+tag@sub.example.org"),
    ("FROM:<user@[192.0.2.1]>", "user@[192.0.2.1]"),
    ("FROM:<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"),
    ("FROM:<user@[x-tag:stuff]>", "user@[x-tag:stuff]"),
    ("FROM:<a!b%c@example.org>", "a!b%c@example.org"),
]


@pytest.mark.parametrize(("arg", "expected"), PATHS_OK)
def test_mail_paths(arg: str, expected: str) -> None:
    assert parse_mail(arg, offered=ALL, max_size=1000).sender == expected


PATHS_BAD = [
    ("FROM:user@example.org", "501 5.5.4"),
    ("FROM:<user@example.org", "501 5.5.4"),
    ("TO:<user@example.org>", "501 5.5.4"),
    ("FROM:<user@example.org>SIZE=1", "501 5.5.4"),
    ("FROM:<user>", "501 5.1.7"),
    ("FROM:<@example.org>", "501 5.1.7"),
    ("FROM:<user@>", "501 5.1.7"),
    ("FROM:<user@exa mple.org>", "501 5.1.7"),
    ("FROM:<user@example.org..>", "501 5.1.7"),
    ("FROM:<user@[192.0.2.1].>", "501 5.1.7"),
    ("FROM:<user@-example.org>", "501 5.1.7"),
    ("FROM:<user@example..org>", "501 5.1.7"),
    ("FROM:<.user@example.org>", "501 5.1.7"),
    ("FROM:<us..er@example.org>", "501 5.1.7"),
    ("FROM:<us er@example.org>", "501 5.1.7"),
    ("FROM:<user@a@example.org>", "501 5.1.7"),
    ('FROM:<"unterminated@example.org>', "501 5.5.4"),
    ("FROM:<user@[300.1.1.1]>", "501 5.1.7"),
    ("FROM:<user@[IPv6:zz::1]>", "501 5.1.7"),
    ("FROM:<@relay.test,user@example.org>", "501 5.1.7"),
    ("FROM:<@relay.test:>", "501 5.1.7"),
    ("FROM:<Postmaster>", "501 5.1.7"),
    ("FROM:<" + "a" * 250 + "@example.org>", "501 5.1.7"),
    ("FROM:<user@" + "a" * 64 + ".org>", "501 5.1.7"),
    ("FROM:<jürgen@example.org>", "553 5.6.7"),
    ("FROM:<user@bücher.test>", "553 5.6.7"),
]


@pytest.mark.parametrize(("arg", "expected"), PATHS_BAD)
def test_mail_paths_refused(arg: str, expected: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_mail(arg, offered=ALL, max_size=1000)
    assert codes([info.value.reply.encode().decode().strip()]) == [expected]


def test_rcpt_paths() -> None:
    assert parse_rcpt("TO:<Postmaster>", offered=ALL, smtputf8=False).address == "Postmaster"
    assert parse_rcpt("TO:<postmaster>", offered=ALL, smtputf8=False).address == "postmaster"
    assert parse_rcpt("TO:<@x.test:u@y.test>", offered=ALL, smtputf8=False).address == "u@y.test"
    for bad, code in [("TO:<>", 501), ("TO:<user>", 501), ("TO:<jürgen@x.test>", 553)]:
        with pytest.raises(CommandError) as info:
            parse_rcpt(bad, offered=ALL, smtputf8=False)
        assert info.value.reply.code == code
    assert parse_rcpt("TO:<jürgen@bücher.test>", offered=ALL, smtputf8=True).address == (
        "jürgen@bücher.test"
    )


def test_path_length_limit() -> None:
    local = "a" * 64
    domain = ".".join(["b" * 60] * 3) + ".test"
    assert len(local) + 1 + len(domain) + 2 <= 256
    assert parse_path(f"{local}@{domain}", utf8=False, null_ok=False, postmaster_ok=False)
    with pytest.raises(ValueError):
        parse_path(f"{local}@{domain}x" * 2, utf8=False, null_ok=False, postmaster_ok=False)


MAIL_PARAMS = [
    ("FROM:<a@b.test> SIZE=1000", {"SIZE": "1000"}),
    ("FROM:<a@b.test> size=0", {"SIZE": "0"}),
    ("FROM:<a@b.test> BODY=8bitmime", {"BODY": "8BITMIME"}),
    ("FROM:<a@b.test> BODY=7BIT", {"BODY": "7BIT"}),
    ("FROM:<a@b.test> SMTPUTF8", {"SMTPUTF8": ""}),
    ("FROM:<a@b.test> RET=hdrs ENVID=QQ+2B+3Dx", {"RET": "HDRS", "ENVID": "QQ+=x"}),
    ("FROM:<a@b.test>  RET=FULL   SIZE=5 ", {"RET": "FULL", "SIZE": "5"}),
    ("FROM:<a@b.test> AUTH=<>", {"AUTH": "<>"}),
    ("FROM:<a@b.test> AUTH=alice+40example.org", {"AUTH": "alice@example.org"}),
]


@pytest.mark.parametrize(("arg", "params"), MAIL_PARAMS)
def test_mail_params(arg: str, params: dict[str, str]) -> None:
    assert parse_mail(arg, offered=ALL, max_size=1000).params == params


MAIL_PARAMS_BAD = [
    ("FROM:<a@b.test> SIZE=1001", ALL, "552 5.3.4"),
    ("FROM:<a@b.test> SIZE=abc", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> SIZE", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> SIZE=1 SIZE=1", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> BODY=BINARYMIME", ALL, "555 5.5.4"),
    ("FROM:<a@b.test> SMTPUTF8=yes", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> RET=ALL", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> ENVID=a+2", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> ENVID=a+0D+0Ab", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> ENVID=" + "x" * 101, ALL, "501 5.5.4"),
    ("FROM:<a@b.test> X-FOO=1", ALL, "555 5.5.4"),
    ("FROM:<a@b.test> NOTIFY=NEVER", ALL, "555 5.5.4"),
    ("FROM:<a@b.test> =1", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> K=", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> K=a=b", ALL, "501 5.5.4"),
    ("FROM:<a@b.test> RET=FULL", frozenset({"SIZE"}), "555 5.5.4"),
    ("FROM:<a@b.test> BODY=8BITMIME", frozenset({"SIZE"}), "555 5.5.4"),
    ("FROM:<a@b.test> SMTPUTF8", frozenset({"SIZE"}), "555 5.5.4"),
    ("FROM:<a@b.test> AUTH=<>", frozenset({"SIZE"}), "555 5.5.4"),
]


@pytest.mark.parametrize(("arg", "offered", "expected"), MAIL_PARAMS_BAD)
def test_mail_params_refused(arg: str, offered: frozenset[str], expected: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_mail(arg, offered=offered, max_size=1000)
    assert codes([info.value.reply.encode().decode().strip()]) == [expected]


RCPT_PARAMS = [
    ("TO:<u@x.test> NOTIFY=NEVER", {"NOTIFY": "NEVER"}),
    ("TO:<u@x.test> NOTIFY=success,Failure,DELAY", {"NOTIFY": "SUCCESS,FAILURE,DELAY"}),
    ("TO:<u@x.test> ORCPT=rfc822;u+40x.test", {"ORCPT": "rfc822;u@x.test"}),
    (
        "TO:<u@x.test> ORCPT=rfc822;a+2Bb@x.test NOTIFY=FAILURE",
        {"ORCPT": "rfc822;a+b@x.test", "NOTIFY": "FAILURE"},
    ),
]


@pytest.mark.parametrize(("arg", "params"), RCPT_PARAMS)
def test_rcpt_params(arg: str, params: dict[str, str]) -> None:
    assert parse_rcpt(arg, offered=ALL, smtputf8=False).params == params


@pytest.mark.parametrize(
    "arg",
    [
        "TO:<u@x.test> NOTIFY=NEVER,SUCCESS",
        "TO:<u@x.test> NOTIFY=SUCCESS,SUCCESS",
        "TO:<u@x.test> NOTIFY=SOMETIMES",
        "TO:<u@x.test> NOTIFY",
        "TO:<u@x.test> ORCPT=u@x.test",
        "TO:<u@x.test> ORCPT=rfc 822;u",
        "TO:<u@x.test> ORCPT=rfc822;u+4",
        "TO:<u@x.test> ORCPT=rfc822;" + "u" * 500,
        "TO:<u@x.test> ORCPT=utf-8;jürgen@x.test",
    ],
)
def test_rcpt_params_refused(arg: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_rcpt(arg, offered=ALL, smtputf8=False)
    assert info.value.reply.code == 501


def test_rcpt_params_need_dsn_and_mail_params_are_not_rcpt_params() -> None:
    for arg, offered in [
        ("TO:<u@x.test> NOTIFY=NEVER", frozenset({"SIZE"})),
        ("TO:<u@x.test> SIZE=10", ALL),
    ]:
        with pytest.raises(CommandError) as info:
            parse_rcpt(arg, offered=offered, smtputf8=False)
        assert info.value.reply.code == 555


def test_orcpt_may_carry_utf8_in_smtputf8_transactions() -> None:
    args = parse_rcpt("TO:<u@x.test> ORCPT=utf-8;jürgen@x.test", offered=ALL, smtputf8=True)
    assert args.params["ORCPT"] == "utf-8;jürgen@x.test"


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [("", ""), ("abc", "abc"), ("a+2Bb", "a+b"), ("+3D+20", "= "), ("x+7e", "x~")],
)
def test_xtext(encoded: str, decoded: str) -> None:
    assert xtext_decode(encoded) == decoded


@pytest.mark.parametrize("bad", ["a b", "a=b", "+", "+4", "+GG", "+00", "é"])
def test_xtext_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        xtext_decode(bad)


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert " " not in encoded and "=" not in encoded
    assert xtext_decode(encoded) == text


def test_dsn_parameters_stay_on_the_envelope() -> None:
    client = ready()
    out = client.send(
        b"MAIL FROM:<s@client.test> RET=HDRS ENVID=id+2B1 SIZE=42\r\n"
        b"RCPT TO:<a@mx.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40mx.test\r\n"
        b"RCPT TO:<b@mx.test> NOTIFY=NEVER\r\n"
        b"DATA\r\nhi\r\n.\r\n"
    )
    assert codes(out) == ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0"]
    (envelope,) = client.completed()
    assert envelope.mail_params == {"RET": "HDRS", "ENVID": "id+1", "SIZE": "42"}
    assert envelope.recipients[0].params == {
        "NOTIFY": "SUCCESS,FAILURE",
        "ORCPT": "rfc822;a@mx.test",
    }
    assert envelope.recipients[1].params == {"NOTIFY": "NEVER"}


def test_size_parameter_over_the_limit_is_refused_at_mail() -> None:
    client = ready(Client(make_settings(max_message_size=1000)))
    assert client.send(b"MAIL FROM:<a@b.test> SIZE=1001\r\n") == [
        "552 5.3.4 Message size exceeds fixed maximum message size"
    ]


def test_smtputf8_transaction() -> None:
    client = ready()
    out = client.send(
        "MAIL FROM:<jürgen@bücher.test> SMTPUTF8\r\nRCPT TO:<ñandú@mx.test>\r\n".encode()
    )
    assert codes(out) == ["250 2.1.0", "250 2.1.5"]
    client.send(b"DATA\r\nx\r\n.\r\n")
    (envelope,) = client.completed()
    assert envelope.smtputf8
    assert envelope.sender == "jürgen@bücher.test"
    assert envelope.recipients[0].address == "ñandú@mx.test"


def test_utf8_address_without_smtputf8() -> None:
    client = ready()
    assert codes(client.send("MAIL FROM:<jürgen@x.test>\r\n".encode())) == ["553 5.6.7"]
    client.send(b"MAIL FROM:<a@b.test>\r\n")
    assert codes(client.send("RCPT TO:<ñandú@mx.test>\r\n".encode())) == ["553 5.6.7"]


def test_smtputf8_refused_when_disabled() -> None:
    client = ready(Client(make_settings(smtputf8=False)))
    assert codes(client.send(b"MAIL FROM:<a@b.test> SMTPUTF8\r\n")) == ["555 5.5.4"]


# ---- recipients ------------------------------------------------------------------------


def test_recipient_limit_counts_accepted_recipients_only() -> None:
    client = ready(Client(make_settings(max_recipients=2)))
    out = client.send(
        b"MAIL FROM:<a@b.test>\r\n"
        b"RCPT TO:<unknown@mx.test>\r\n"
        b"RCPT TO:<r1@mx.test>\r\n"
        b"RCPT TO:<full@mx.test>\r\n"
        b"RCPT TO:<r2@mx.test>\r\n"
        b"RCPT TO:<r3@mx.test>\r\n"
        b"RCPT TO:<r4@mx.test>\r\n"
        b"DATA\r\nx\r\n.\r\n"
    )
    assert codes(out) == [
        "250 2.1.0",
        "550 5.1.1",
        "250 2.1.5",
        "450 4.2.2",
        "250 2.1.5",
        "452 4.5.3",
        "452 4.5.3",
        "354",
        "250 2.0.0",
    ]
    (envelope,) = client.completed()
    assert [r.address for r in envelope.recipients] == ["r1@mx.test", "r2@mx.test"]


def test_policy_sees_the_session() -> None:
    client = ready(Client(tls=True))
    client.send(b"MAIL FROM:<a@b.test>\r\n")
    policy = client.session.policy
    assert isinstance(policy, Policy)
    assert policy.seen_sessions[0].tls
    assert policy.seen_sessions[0].client_name == "client.test"


# ---- DATA ------------------------------------------------------------------------------

# (body as sent after the 354, stored bytes, whether the message ended)
DATA_CASES = [
    (b".\r\n", b"", True),
    (b"a\r\n.\r\n", b"a\n", True),
    (b"..\r\n.\r\n", b".\n", True),
    (b"..x\r\n...\r\n.\r\n", b".x\n..\n", True),
    (b".x\r\n.\r\n", b"x\n", True),
    (b"a\r\nb\r\n\r\n.\r\n", b"a\nb\n\n", True),
    (b"a\nb\r\n.\r\n", b"a\nb\n", True),
    (b"a\rb\r\n.\r\n", b"a\rb\n", True),
    (b"a\n.\nb\r\n.\r\n", b"a\n.\nb\n", True),
    (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\n", True),
    (b"a\n.\r\nb\r\n.\r\n", b"a\n.\nb\n", True),
    (b"a\r\n.\nb\r\n.\r\n", b"a\n\nb\n", True),
    (b"a\n..\r\n.\r\n", b"a\n..\n", True),
    (b"\x00\xff\r\n.\r\n", b"\x00\xff\n", True),
    (b"a\r\n.\rx\r\n.\r\n", b"a\n\rx\n", True),
    (b"a\r\n.\r\r\n.\r\n", b"a\n\r\n", True),
    (b"a\n.\n", b"a\n.\n", False),
    (b"a\r.\r", b"a\r.\r", False),
    (b"a\n.\r\n", b"a\n.\n", False),
    (b"a\r\n.\n", b"a\n\n", False),
    (b"a\r\n.", b"a\n", False),
    (b"a\r\n", b"a\n", False),
]


def data_session() -> Client:
    client = in_transaction()
    assert codes(client.send(b"DATA\r\n")) == ["354"]
    return client


def run_data(chunks: list[bytes]) -> Client:
    client = data_session()
    for chunk in chunks:
        client.send(chunk)
    client.eof()
    return client


@pytest.mark.parametrize(("sent", "stored", "ends"), DATA_CASES)
def test_data_end_and_unstuffing(sent: bytes, stored: bytes, ends: bool) -> None:
    client = run_data([sent])
    if ends:
        assert client.kinds()[-2:] == ["MessageComplete", "Close"]
        assert client.body() == stored
    else:
        assert client.kinds()[-2:] == ["MessageAborted", "Close"]
        assert client.completed() == []


@pytest.mark.parametrize(("sent", "stored", "ends"), DATA_CASES)
def test_data_split_at_every_offset(sent: bytes, stored: bytes, ends: bool) -> None:
    for cut in range(len(sent) + 1):
        client = run_data([sent[:cut], sent[cut:]])
        assert (client.completed() != []) is ends
        if ends:
            assert client.body() == stored
    bytewise = run_data([bytes([b]) for b in sent])
    assert (bytewise.completed() != []) is ends
    if ends:
        assert bytewise.body() == stored


@pytest.mark.parametrize(
    "smuggled",
    [
        b"\n.\n",
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r.\r\n",
        b"\n.\r",
    ],
)
def test_smuggling_variants_do_not_end_data(smuggled: bytes) -> None:
    client = data_session()
    out = client.send(
        b"Subject: first\r\n\r\nbody"
        + smuggled
        + b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\n"
        + b"Subject: smuggled\r\n\r\n.\r\n"
    )
    assert codes(out) == ["250 2.0.0"]
    (envelope,) = client.completed()
    assert envelope.sender == "s@client.test"
    assert b"MAIL FROM:<evil@attacker.test>" in client.body()
    assert b"Subject: smuggled" in client.body()


def test_data_streams_in_chunks() -> None:
    client = data_session()
    client.send(b"line one\r\n")
    client.send(b"line two\r\n")
    client.send(b".\r\n")
    data_events = [e for e in client.events if isinstance(e, MessageData)]
    assert [e.data for e in data_events] == [b"line one", b"\nline two", b"\n"]


def test_message_started_carries_the_envelope() -> None:
    client = data_session()
    (started,) = [e for e in client.events if isinstance(e, MessageStarted)]
    assert started.envelope.sender == "s@client.test"


def test_data_size_limit() -> None:
    client = in_transaction(Client(make_settings(max_message_size=100)))
    client.send(b"DATA\r\n")
    client.send(b"x" * 60 + b"\r\n")
    out = client.send(b"y" * 60 + b"\r\n" + b"z" * 1000 + b"\r\n")
    assert out == []
    assert client.kinds() == ["MessageStarted", "MessageData", "MessageAborted"]
    out = client.send(b".\r\nRCPT TO:<u@mx.test>\r\nMAIL FROM:<a@b.test>\r\n")
    assert codes(out) == ["552 5.3.4", "503 5.5.1", "250 2.1.0"]
    assert client.completed() == []


def test_data_exactly_at_the_size_limit() -> None:
    client = in_transaction(Client(make_settings(max_message_size=10)))
    out = client.send(b"DATA\r\n" + b"x" * 8 + b"\r\n.\r\n")
    assert codes(out) == ["354", "250 2.0.0"]
    assert client.completed()[0].size == 10


def test_eof_during_data_aborts() -> None:
    client = data_session()
    client.send(b"partial")
    client.eof()
    assert client.kinds()[-2:] == ["MessageAborted", "Close"]


def test_timeout_during_data() -> None:
    client = data_session()
    client.send(b"partial\r\n")
    client.session.timeout()
    assert client.pump() == ["421 4.4.2 mx.test Timeout, closing connection"]
    assert client.kinds()[-2:] == ["MessageAborted", "Close"]
    assert isinstance(client.events[-2], MessageAborted)
    assert client.events[-2].reason == "timeout"


def test_timeout_while_idle() -> None:
    client = ready()
    client.session.timeout()
    assert codes(client.pump()) == ["421 4.4.2"]
    assert client.kinds() == ["Close"]
    client.session.timeout()
    assert client.pump() == []


def test_eof_between_commands_closes_quietly() -> None:
    client = ready()
    client.send(b"NOO")
    assert client.eof() == []
    assert client.kinds() == ["Close"]


def test_eof_after_pipelined_message_still_delivers() -> None:
    client = in_transaction(Client(answer=False))
    client.session.receive_data(b"DATA\r\nx\r\n.\r\nQUIT\r\n")
    assert codes(client.eof()) == ["354"]
    assert client.kinds()[-1] == "MessageComplete"
    client.session.message_result(QUEUED)
    assert codes(client.pump()) == ["250 2.0.0", "221 2.0.0"]
    assert client.kinds()[-1] == "Close"


def client_stuff(body: bytes) -> bytes:
    """What a correct client sends for `body`: dot-stuffed, CRLF-terminated, plus the end."""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    stuffed = (b"\r\n" + body).replace(b"\r\n.", b"\r\n..")[2:]
    return stuffed + b".\r\n"


@settings(max_examples=300)
@given(st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=4))
def test_dot_decoder_inverts_client_stuffing(body: bytes, cuts: list[int]) -> None:
    wire = client_stuff(body) + b"NEXT"
    expected = (body if body.endswith(b"\r\n") else body + b"\r\n").replace(b"\r\n", b"\n")
    decoder = DotDecoder()
    out, rest = b"", None
    previous = 0
    for cut in [*sorted(c for c in cuts if c <= len(wire)), len(wire)]:
        chunk, rest = decoder.feed(wire[previous:cut])
        out += chunk
        previous = cut
        if rest is not None:
            break
    assert out == expected
    assert rest is not None
    assert rest + wire[previous:] == b"NEXT"
    assert decoder.size == len(body) + (0 if body.endswith(b"\r\n") else 2)


# ---- BDAT ------------------------------------------------------------------------------


def test_bdat_single_chunk() -> None:
    client = in_transaction()
    out = client.send(b"BDAT 9 LAST\r\nab\r\ncd\r\n.QUIT\r\n")
    assert codes(out) == ["250 2.0.0", "221 2.0.0"]
    assert client.body() == b"ab\ncd\n."
    assert client.completed()[0].size == 9


def test_bdat_chunks_get_a_reply_each() -> None:
    client = in_transaction()
    out = client.send(b"BDAT 3\r\nabcBDAT 2\r\nde")
    assert out == ["250 2.0.0 3 octets received", "250 2.0.0 2 octets received"]
    assert codes(client.send(b"BDAT 0 LAST\r\n")) == ["250 2.0.0"]
    assert client.body() == b"abcde"
    assert client.kinds().count("MessageStarted") == 1


@pytest.mark.parametrize("cut", range(0, 40))
def test_bdat_split_at_every_offset(cut: int) -> None:
    wire = b"BDAT 6\r\nab\r\n\r\nBDAT 6 LAST\r\n.x\r\ny\rNOOP\r\n"
    assert len(wire) == 39
    client = in_transaction()
    out = client.send(wire[:cut]) + client.send(wire[cut:])
    assert codes(out) == ["250 2.0.0", "250 2.0.0", "250 2.0.0"]
    assert client.body() == b"ab\n\n.x\ny\r"
    assert client.completed()[0].size == 12


def test_bdat_crlf_across_chunks() -> None:
    client = in_transaction()
    client.send(b"BDAT 2\r\na\rBDAT 2 LAST\r\n\nb")
    assert client.body() == b"a\nb"


def test_bdat_dots_are_not_unstuffed() -> None:
    client = in_transaction()
    client.send(b"BDAT 9 LAST\r\n..\r\n.\r\n.")
    assert client.body() == b"..\n.\n."


def test_bdat_without_mail_consumes_the_chunk() -> None:
    client = ready()
    out = client.send(b"BDAT 12\r\nRSET\r\nQUIT\r\nNOOP\r\n")
    assert codes(out) == ["503 5.5.1", "250 2.0.0"]
    assert not client.session.closed


def test_bdat_without_recipients_consumes_the_chunk() -> None:
    client = ready()
    client.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<unknown@mx.test>\r\n")
    out = client.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
    assert codes(out) == ["554 5.5.1", "250 2.0.0"]
    assert "MessageStarted" not in client.kinds()


def test_data_after_bdat_is_refused() -> None:
    client = in_transaction()
    out = client.send(b"BDAT 1\r\nxDATA\r\nRCPT TO:<v@mx.test>\r\nMAIL FROM:<a@b.test>\r\n")
    assert codes(out) == ["250 2.0.0", "503 5.5.1", "503 5.5.1", "503 5.5.1"]
    assert codes(client.send(b"BDAT 1 LAST\r\ny")) == ["250 2.0.0"]
    assert client.body() == b"xy"


def test_rset_during_bdat_aborts_the_message() -> None:
    client = in_transaction()
    out = client.send(b"BDAT 1\r\nxRSET\r\nBDAT 1 LAST\r\ny")
    assert codes(out) == ["250 2.0.0", "250 2.0.0", "503 5.5.1"]
    assert client.kinds() == ["MessageStarted", "MessageData", "MessageAborted"]
    assert client.completed() == []


def test_bdat_over_the_size_limit() -> None:
    client = in_transaction(Client(make_settings(max_message_size=10)))
    out = client.send(b"BDAT 6\r\n123456BDAT 6\r\n789012BDAT 3 LAST\r\nabcNOOP\r\n")
    assert codes(out) == ["250 2.0.0", "552 5.3.4", "503 5.5.1", "250 2.0.0"]
    assert client.kinds() == ["MessageStarted", "MessageData", "MessageAborted"]


def test_bdat_syntax() -> None:
    client = in_transaction()
    for bad in (b"BDAT\r\n", b"BDAT x\r\n", b"BDAT -1\r\n", b"BDAT 1 NOW\r\n", b"BDAT 1LAST\r\n"):
        assert codes(client.send(bad)) == ["501 5.5.4"]
    assert codes(client.send(b"BDAT 1 last\r\nx")) == ["250 2.0.0"]


def test_bdat_not_offered_without_chunking() -> None:
    client = in_transaction(Client(make_settings(chunking=False)))
    assert codes(client.send(b"BDAT 1 LAST\r\n")) == ["500 5.5.1"]


def test_eof_during_bdat_aborts() -> None:
    client = in_transaction()
    client.send(b"BDAT 100\r\nabc")
    client.eof()
    assert client.kinds()[-2:] == ["MessageAborted", "Close"]


def test_crlf_decoder_keeps_a_final_bare_cr() -> None:
    decoder = CrlfDecoder()
    assert decoder.feed(b"a\r\nb\r") == b"a\nb"
    assert decoder.finish() == b"\r"
    assert decoder.size == 5


# ---- AUTH ------------------------------------------------------------------------------

AUTH_SETTINGS = make_settings(auth_mechanisms=("PLAIN", "LOGIN"))


def auth_client(**overrides: object) -> Client:
    settings = replace(AUTH_SETTINGS, **overrides)  # type: ignore[arg-type]
    return ready(Client(settings, tls=True))


def test_auth_plain_with_initial_response() -> None:
    client = auth_client()
    out = client.send(auth_plain(b"alice", b"secret"))
    assert out == ["235 2.7.0 Authentication successful"]
    (attempt,) = [e for e in client.events if isinstance(e, AuthAttempt)]
    assert (attempt.mechanism, attempt.authzid, attempt.username) == ("PLAIN", "", "alice")
    assert "secret" not in repr(attempt)
    assert client.info.authenticated_as == "alice"


def test_auth_plain_without_initial_response() -> None:
    client = auth_client()
    assert client.send(b"AUTH plain\r\n") == ["334 "]
    assert codes(client.send(plain(b"alice", b"secret", b"boss") + b"\r\n")) == ["235 2.7.0"]
    (attempt,) = [e for e in client.events if isinstance(e, AuthAttempt)]
    assert attempt.authzid == "boss"


def test_auth_login() -> None:
    client = auth_client()
    assert client.send(b"AUTH LOGIN\r\n") == ["334 VXNlcm5hbWU6"]
    assert client.send(f"{b64(b'bob@example.org')}\r\n".encode()) == ["334 UGFzc3dvcmQ6"]
    assert codes(client.send(f"{b64(b'hunter2')}\r\n".encode())) == ["235 2.7.0"]
    assert client.info.authenticated_as == "bob@example.org"


def test_auth_login_with_initial_response() -> None:
    client = auth_client()
    assert client.send(f"AUTH LOGIN {b64(b'alice')}\r\n".encode()) == ["334 UGFzc3dvcmQ6"]
    assert codes(client.send(f"{b64(b'wrong')}\r\n".encode())) == ["535 5.7.8"]
    assert client.info.authenticated_as is None


def test_auth_waits_for_the_verdict() -> None:
    client = auth_client()
    client.answer = False
    out = client.send(auth_plain(b"alice", b"secret") + b"MAIL FROM:<a@b.test>\r\n")
    assert out == []
    assert client.session.awaiting_result
    client.session.auth_result(False, error=reply(454, "4.7.0", "Temporary authentication failure"))
    assert codes(client.pump()) == ["454 4.7.0", "250 2.1.0"]


AUTH_ERRORS = [
    (b"AUTH PLAIN\r\n*\r\n", ["334", "501 5.0.0"]),
    (b"AUTH LOGIN\r\n*\r\n", ["334", "501 5.0.0"]),
    (b"AUTH PLAIN\r\n%%%%\r\n", ["334", "501 5.5.2"]),
    (b"AUTH PLAIN bm9wZQ==\r\n", ["501 5.5.2"]),
    (b"AUTH PLAIN =\r\n", ["501 5.5.2"]),
    (b"AUTH PLAIN !!\r\n", ["501 5.5.2"]),
    (b"AUTH LOGIN\r\n\xff\xfe\r\n", ["334", "501 5.5.2"]),
    (b"AUTH LOGIN\r\nYQ==\n", ["334", "500 5.5.2"]),
    (b"AUTH CRAM-MD5\r\n", ["504 5.5.4"]),
    (b"AUTH\r\n", ["501 5.5.4"]),
    (b"AUTH PLAIN a b\r\n", ["501 5.5.4"]),
]


@pytest.mark.parametrize(("data", "expected"), AUTH_ERRORS)
def test_auth_errors(data: bytes, expected: list[str]) -> None:
    client = auth_client()
    assert codes(client.send(data)) == expected
    assert client.info.authenticated_as is None
    assert codes(client.send(b"NOOP\r\n")) == ["250 2.0.0"]


def test_auth_twice_is_refused() -> None:
    client = auth_client()
    client.send(auth_plain(b"alice", b"secret"))
    assert codes(client.send(b"AUTH LOGIN\r\n")) == ["503 5.5.1"]


def test_auth_not_during_a_transaction() -> None:
    client = auth_client()
    client.send(b"MAIL FROM:<a@b.test>\r\n")
    assert codes(client.send(b"AUTH LOGIN\r\n")) == ["503 5.5.1"]


def test_auth_needs_tls_when_configured() -> None:
    client = ready(Client(AUTH_SETTINGS))
    assert codes(client.send(b"AUTH PLAIN\r\n")) == ["538 5.7.11"]


def test_auth_needs_ehlo_and_configuration() -> None:
    assert codes(Client(AUTH_SETTINGS, tls=True).send(b"AUTH PLAIN\r\n")) == ["503 5.5.1"]
    assert codes(ready(Client(tls=True)).send(b"AUTH PLAIN\r\n")) == ["503 5.5.1"]


def test_mechanism_must_be_configured() -> None:
    client = auth_client(auth_mechanisms=("PLAIN",))
    assert codes(client.send(b"AUTH LOGIN\r\n")) == ["504 5.5.4"]


def test_submission_requires_auth_before_mail() -> None:
    client = auth_client(require_auth_for_mail=True)
    assert codes(client.send(b"MAIL FROM:<alice@mx.test>\r\n")) == ["530 5.7.0"]
    client.send(auth_plain(b"alice", b"secret"))
    assert codes(client.send(b"MAIL FROM:<alice@mx.test> AUTH=alice+40mx.test\r\n")) == [
        "250 2.1.0"
    ]


def test_long_auth_line_is_allowed() -> None:
    client = auth_client(max_line_length=512)
    password = b"p" * 3000
    out = client.send(auth_plain(b"alice", password))
    assert codes(out) == ["535 5.7.8"]
    assert codes(client.send(b"AUTH PLAIN\r\n" + plain(b"alice", password) + b"\r\n")) == [
        "334",
        "535 5.7.8",
    ]


def test_failed_auth_counts_as_an_error() -> None:
    client = auth_client(max_errors=2)
    bad = auth_plain(b"alice", b"nope")
    assert codes(client.send(bad + bad)) == ["535 5.7.8", "535 5.7.8", "421 4.7.0"]
    assert client.session.closed


# ---- STARTTLS --------------------------------------------------------------------------

TLS_SETTINGS = make_settings(starttls_available=True, auth_mechanisms=("PLAIN",))


def test_starttls_resets_the_session() -> None:
    client = ready(Client(TLS_SETTINGS, answer=False))
    out = client.send(b"STARTTLS\r\nMAIL FROM:<injected@x.test>\r\n")
    assert out == ["220 2.0.0 Ready to start TLS"]
    assert client.kinds() == ["StartTLS"]
    assert client.session.awaiting_result
    client.session.receive_data(b"RSET\r\n")
    client.session.tls_started()
    assert client.pump() == []
    assert client.info.tls
    assert client.info.client_name == ""
    assert codes(client.send(b"MAIL FROM:<a@b.test>\r\n")) == ["503 5.5.1"]
    keywords = ehlo_keywords(client)
    assert "STARTTLS" not in keywords
    assert "AUTH PLAIN" in keywords


def test_starttls_forgets_plaintext_authentication() -> None:
    settings = replace(TLS_SETTINGS, auth_requires_tls=False)
    client = ready(Client(settings))
    client.send(auth_plain(b"alice", b"secret"))
    assert client.info.authenticated_as == "alice"
    client.send(b"STARTTLS\r\n")
    assert client.info.authenticated_as is None


STARTTLS_REFUSED = [
    (TLS_SETTINGS, False, b"", b"STARTTLS", "503 5.5.1"),
    (TLS_SETTINGS, True, b"EHLO c\r\n", b"STARTTLS", "503 5.5.1"),
    (TLS_SETTINGS, False, b"EHLO c\r\n", b"STARTTLS now", "501 5.5.4"),
    (TLS_SETTINGS, False, b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n", b"STARTTLS", "503 5.5.1"),
    (make_settings(), False, b"EHLO c\r\n", b"STARTTLS", "500 5.5.1"),
]


@pytest.mark.parametrize(("cfg", "tls", "setup", "command", "expected"), STARTTLS_REFUSED)
def test_starttls_refused(
    cfg: Settings, tls: bool, setup: bytes, command: bytes, expected: str
) -> None:
    client = Client(cfg, tls=tls)
    client.send(setup)
    assert codes(client.send(command + b"\r\n")) == [expected]
    assert "StartTLS" not in client.kinds()


def test_result_calls_out_of_turn_raise() -> None:
    session = ready().session
    with pytest.raises(RuntimeError):
        session.tls_started()
    with pytest.raises(RuntimeError):
        session.auth_result(True, "x")
    with pytest.raises(RuntimeError):
        session.message_result(QUEUED)


def test_settings_validation() -> None:
    for bad in (
        {"max_line_length": 511},
        {"auth_mechanisms": ("CRAM-MD5",)},
        {"hostname": "two words"},
        {"max_errors": 0},
    ):
        with pytest.raises(ValueError):
            make_settings(**bad)


# ---- robustness ------------------------------------------------------------------------

TOKENS = [
    b"EHLO x\r\n",
    b"HELO x\r\n",
    b"MAIL FROM:<a@b.test>\r\n",
    b"MAIL FROM:<> SIZE=99999999999 BODY=8BITMIME SMTPUTF8\r\n",
    b"RCPT TO:<u@mx.test> NOTIFY=NEVER\r\n",
    b"RCPT TO:<unknown@mx.test>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 99999999999999999999\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"RSET\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN YWxpY2U=\r\n",
    b"*\r\n",
    b"AGFsaWNlAHNlY3JldA==\r\n",
    b"QUIT\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff",
    b"x" * 600,
]

STREAMS = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=40)), max_size=30).map(
    b"".join
)


@settings(max_examples=300, deadline=None)
@given(STREAMS, st.lists(st.integers(0, 2000), max_size=5), st.booleans())
def test_random_input_never_raises_and_always_yields_valid_replies(
    stream: bytes, cuts: list[int], tls: bool
) -> None:
    cfg = make_settings(
        starttls_available=True,
        auth_mechanisms=("PLAIN", "LOGIN"),
        auth_requires_tls=False,
        max_line_length=512,
        max_message_size=64,
        max_errors=50,
    )
    client = Client(cfg, tls=tls)
    previous = 0
    for cut in [*sorted(c for c in cuts if c <= len(stream)), len(stream)]:
        client.send(stream[previous:cut])
        previous = cut
    client.eof()
    client.session.timeout()
    client.pump()
    assert client.session.closed
    assert client.kinds()[-1] == "Close"
    assert client.kinds().count("Close") == 1
    for envelope in client.completed():
        assert envelope.recipients
        assert envelope.size <= 64
