"""Bad input on live sockets: a bounded fuzz run, and SMTP smuggling probes."""

from __future__ import annotations

import poplib
import random
import smtplib
import socket
import ssl
import threading
import time

from tests.conftest import Daisy
from tests.reliability.conftest import maildir_files, report, scale

SMTP_VERBS = [
    b"HELO",
    b"EHLO",
    b"MAIL FROM:",
    b"RCPT TO:",
    b"DATA",
    b"BDAT",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"VRFY",
    b"EXPN",
    b"STARTTLS",
    b"AUTH PLAIN",
    b"AUTH LOGIN",
    b"HELP",
    b".",
]
POP3_VERBS = [
    b"USER",
    b"PASS",
    b"APOP",
    b"STAT",
    b"LIST",
    b"RETR",
    b"DELE",
    b"TOP",
    b"UIDL",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"CAPA",
    b"STLS",
    b"AUTH PLAIN",
    b"LAST",
    b".",
]
EOLS = [b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r", b""]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def partial_client_hello(rnd: random.Random) -> bytes:
    """The first bytes of a real ClientHello, cut short, or with a lying length."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="mail.daisy.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    if rnd.random() < 0.5:
        return hello[: rnd.randrange(1, len(hello))]
    return hello[:3] + b"\xff\xff" + hello[5 : rnd.randrange(6, len(hello))]


def make_input(rnd: random.Random, verbs: list[bytes]) -> tuple[str, bytes]:
    kind = rnd.choice(
        ["random", "huge_line", "nul", "bare_eol", "tls", "out_of_order", "mixed_case"]
    )
    if kind == "random":
        return kind, rnd.randbytes(rnd.randrange(1, 4096))
    if kind == "huge_line":
        return kind, rnd.choice(verbs) + b" " + b"A" * rnd.choice([3000, 70_000, 1_200_000])
    if kind == "nul":
        v = rnd.choice(verbs)
        cut = rnd.randrange(len(v) + 1)
        return kind, v[:cut] + b"\0" + v[cut:] + b" x\0y" + rnd.choice(EOLS)
    if kind == "bare_eol":
        return kind, b"".join(rnd.choice(verbs) + b" a" + rnd.choice(EOLS) for _ in range(20))
    if kind == "tls":
        return kind, partial_client_hello(rnd)
    if kind == "mixed_case":
        v = bytes(
            c ^ 0x20 if rnd.random() < 0.5 and 65 <= (c | 0x20) - 32 <= 90 else c
            for c in rnd.choice(verbs)
        )
        return kind, v + b" <a@b>\r\n"
    seq = [
        rnd.choice(verbs) + rnd.choice([b"", b" <x@example.test>", b" 1", b" =", b" *"])
        for _ in range(rnd.randrange(1, 30))
    ]
    return kind, b"\r\n".join(seq) + b"\r\n"


def fuzz_worker(
    daisy: Daisy, seed: int, until: float, counts: dict[str, int], lock: threading.Lock
) -> None:
    rnd = random.Random(seed)
    services = [(n, p) for n, p in daisy.ports.items()]
    while time.monotonic() < until:
        name, port = rnd.choice(services)
        verbs = POP3_VERBS if name.startswith("pop3") else SMTP_VERBS
        prelude = b""
        if name in ("smtp", "submission") and rnd.random() < 0.2:
            prelude = b"EHLO x\r\nSTARTTLS\r\n"
        elif name == "pop3" and rnd.random() < 0.2:
            prelude = b"STLS\r\n"
        kind, data = make_input(rnd, verbs)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(prelude + data)
                if rnd.random() < 0.5:
                    s.settimeout(0.3)
                    try:
                        s.recv(65536)
                    except OSError:
                        pass
        except OSError:
            pass
        with lock:
            counts[kind] = counts.get(kind, 0) + 1


def still_serves(daisy: Daisy) -> None:
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        s.sendmail("a@sender.test", ["demo@example.test"], b"Subject: after\r\n\r\nok\r\n")
    # The fuzz's own USER/PASS guesses come from this address too, so the login may be
    # throttled for up to the 30 s maximum; later it must still succeed.
    pop = poplib.POP3("127.0.0.1", daisy.ports["pop3"], timeout=45)
    pop.user("demo@example.test")
    pop.pass_("demo-pw")
    assert pop.stat()[0] >= 1
    pop.quit()


def test_live_fuzz_leaves_the_server_answering_with_bounded_memory(daisy: Daisy) -> None:
    assert daisy.proc is not None
    seconds = scale(5, 300)
    still_serves(daisy)
    rss_before = rss_kib(daisy.proc.pid)
    counts: dict[str, int] = {}
    lock = threading.Lock()
    until = time.monotonic() + seconds
    workers = [
        threading.Thread(target=fuzz_worker, args=(daisy, i, until, counts, lock)) for i in range(8)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 30)
    assert daisy.proc.poll() is None, "server died"
    time.sleep(1)
    still_serves(daisy)
    rss_after = rss_kib(daisy.proc.pid)
    logs = daisy.logs()
    errors = logs.count("smtp.error") + logs.count("pop3.error") + logs.count("Traceback")
    report(
        "fuzz.live",
        seconds=seconds,
        inputs=sum(counts.values()),
        by_kind=counts,
        crashes=int(daisy.proc.poll() is not None),
        internal_errors=errors,
        rss_before_kib=rss_before,
        rss_after_kib=rss_after,
    )
    assert errors == 0, [x for x in logs.splitlines() if "error" in x][:20]
    assert rss_after < rss_before + 64 * 1024, (rss_before, rss_after)
    # No session is left hanging: a stop does not have to wait out its grace period.
    t0 = time.monotonic()
    assert daisy.stop() == 0
    assert time.monotonic() - t0 < 10, "sessions were still open after the fuzz run"


SMUGGLED = (
    "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
    "Subject: smuggled\r\n\r\nsmuggled body\r\n"
)

# Fake ends of data that some servers take for <CRLF>.<CRLF> and others do not.
PROBES = [
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\n.\r",
    b"\r.\n",
    b"\r\n\x00.\r\n",
    b"\r\n.\x00\r\n",
]


def smuggle(daisy: Daisy, probe: bytes) -> tuple[bytes, bytes]:
    """One message with a fake end of data inside; the first reply and what follows."""
    with socket.create_connection(("127.0.0.1", daisy.ports["smtp"]), timeout=10) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            while True:
                line = f.readline()
                if not line or line[3:4] != b"-":
                    return line

        reply()
        for cmd in (
            b"EHLO x",
            b"MAIL FROM:<a@sender.test>",
            b"RCPT TO:<demo@example.test>",
            b"DATA",
        ):
            s.sendall(cmd + b"\r\n")
            reply()
        s.sendall(b"Subject: first\r\n\r\nbody" + probe + SMUGGLED.encode() + b"\r\n.\r\n")
        first = reply()
        s.sendall(b"QUIT\r\n")
        return first, f.read()


def test_smuggling_probes_never_split_a_message(daisy: Daisy) -> None:
    box = daisy.root / "mail/demo.example.test"
    for n, probe in enumerate(PROBES, 1):
        first, rest = smuggle(daisy, probe)
        assert first.startswith(b"250"), (probe, first)
        assert rest.startswith(b"221") and rest.count(b"\r\n") == 1, (probe, rest)
        stored = maildir_files(box)
        assert len(stored) == n, f"{probe!r} split the message in two"
        newest = max(stored, key=lambda p: p.stat().st_mtime_ns).read_bytes()
        assert b"Subject: smuggled" in newest, probe
    report("fuzz.smuggling", probes=len(PROBES), split=0)
