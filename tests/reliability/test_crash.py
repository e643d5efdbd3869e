"""Crash consistency: SIGKILL the server under load, restart it, and account for every
message that was acknowledged with a 250."""

from __future__ import annotations

import json
import poplib
import random
import signal
import smtplib
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Daisy
from tests.integration.smtp_sink import Sink
from tests.reliability.conftest import (
    check_tagged,
    maildir_files,
    mbox_messages,
    report,
    scale,
    tagged_message,
    wait_for,
)

LOCAL = "demo@example.test"
MBOX = "mb@example.test"
REMOTE = "far@remote.test"


def setup_server(daisy: Daisy, sink_port: int) -> None:
    text = daisy.config.read_text().replace(
        "[queue.routes]", f'[queue.routes]\n"remote.test" = "127.0.0.1:{sink_port}"', 1
    )
    daisy.config.write_text(text)
    daisy.set_config("[queue]", "retry_schedule", "[1]")
    daisy.cli("domain", "add", "example.test")
    daisy.add_user(LOCAL, "demo-pw")
    daisy.cli("mailbox", "add", "mb", "--format", "mbox")
    daisy.add_user(MBOX, "mb-pw", "--mailbox", "mb")


class Load:
    """Client threads sending tagged messages; acked maps tag -> recipients."""

    def __init__(self, port: int, threads: int) -> None:
        self.port = port
        self.acked: dict[str, list[str]] = {}
        self.attempts = 0
        self.temp_failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, seed: int) -> None:
        rnd = random.Random(seed)
        while not self._stop.is_set():
            rcpts = rnd.sample([LOCAL, MBOX, REMOTE], rnd.randint(1, 3))
            tag, msg = tagged_message(rnd.choice([300, 3000, 60_000, 400_000]))
            with self._lock:
                self.attempts += 1
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=15) as s:
                    s.sendmail("load@sender.test", rcpts, msg)
            except smtplib.SMTPResponseException as e:
                if 400 <= e.smtp_code < 500:
                    with self._lock:
                        self.temp_failures += 1
                continue
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)
                continue
            with self._lock:
                self.acked[tag] = rcpts


def kill(daisy: Daisy) -> None:
    assert daisy.proc is not None
    daisy.proc.send_signal(signal.SIGKILL)
    daisy.proc.wait()
    daisy.proc = None


def stored(daisy: Daisy, sink: Sink) -> dict[str, Counter[str]]:
    """Intact copies of each tag per place; truncated or garbled copies under "BAD"."""
    places: dict[str, Counter[str]] = {LOCAL: Counter(), MBOX: Counter(), REMOTE: Counter()}
    bad: Counter[str] = Counter()
    raws: list[tuple[str, bytes]] = [
        (LOCAL, p.read_bytes()) for p in maildir_files(daisy.root / "mail/demo.example.test")
    ]
    raws += [(MBOX, m) for m in mbox_messages(daisy.root / "mail/mb")]
    raws += [(REMOTE, data) for _, _, data in list(sink.messages)]
    for place, raw in raws:
        tag, intact = check_tagged(raw)
        if intact:
            places[place][tag] += 1
        else:
            bad[f"{place}:{tag}"] += 1
    places["BAD"] = bad
    return places


@pytest.mark.parametrize("journal", ["false", "true"], ids=["per-copy-flush", "intake-journal"])
def test_sigkill_under_load_loses_nothing(daisy_dir: Daisy, sink: Sink, journal: str) -> None:
    kills = scale(5, 200)
    setup_server(daisy_dir, sink.port)
    daisy_dir.set_config("[storage]", "intake_journal", journal)
    daisy_dir.start()
    rnd = random.Random()
    with Load(daisy_dir.ports["smtp"], threads=scale(4, 8)) as load:
        for _ in range(kills):
            time.sleep(rnd.uniform(0.2, 1.0))
            kill(daisy_dir)
            daisy_dir.start()
        time.sleep(1)
    queue = daisy_dir.root / "queue"
    wait_for(  # the backlog grows with the kills: 200 leave about 1,000 queued
        lambda: json.loads(daisy_dir.cli("queue", "list", "--json").stdout) == [],
        timeout=scale(60, 400),
        what="queue drained",
    )
    places = stored(daisy_dir, sink)
    lost = [
        (tag, rcpt) for tag, rcpts in load.acked.items() for rcpt in rcpts if not places[rcpt][tag]
    ]
    duplicates = sum(n - 1 for p in (LOCAL, MBOX, REMOTE) for n in places[p].values() if n > 1)
    # A kill in the middle of an mbox append leaves a fragment of a message that was
    # never acknowledged; a damaged copy of an acknowledged one would be a loss.
    damaged = [k for k in places["BAD"] if k.split(":", 1)[1] in load.acked]
    fragments = sum(places["BAD"].values()) - len(damaged)
    logs = daisy_dir.logs()
    report(
        "crash.smtp",
        intake_journal=journal,
        kills=kills,
        attempts=load.attempts,
        acked=len(load.acked),
        acked_copies=sum(len(r) for r in load.acked.values()),
        temp_failures=load.temp_failures,
        lost=len(lost),
        damaged=len(damaged),
        unacknowledged_fragments=fragments,
        duplicates=duplicates,
        queue_left=len(list((queue / "env").glob("*.json"))) if (queue / "env").exists() else 0,
        tracebacks=logs.count("Traceback"),
        maildir_tmp_left=len(list((daisy_dir.root / "mail/demo.example.test/tmp").glob("*"))),
    )
    assert len(load.acked) > kills, "the load never got through"
    assert lost == []
    assert damaged == []
    assert all(k.startswith(MBOX) for k in places["BAD"]), places["BAD"]


def test_sigkill_mid_mbox_append_spares_the_next_message(daisy_dir: Daisy) -> None:
    """A killed append leaves part of a message (no 250 was given); the next message
    must still be a message of its own, not swallowed by the fragment."""
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.cli("mailbox", "add", "mb", "--format", "mbox")
    daisy_dir.add_user(MBOX, "mb-pw", "--mailbox", "mb")
    path = daisy_dir.root / "mail/mb"
    daisy_dir.start()
    _, big = tagged_message(30_000_000)
    sender = threading.Thread(target=_try_send, args=(daisy_dir.ports["smtp"], big), daemon=True)
    sender.start()
    wait_for(lambda: path.exists() and path.stat().st_size > 0, timeout=30, what="append begun")
    kill(daisy_dir)
    fragment = path.stat().st_size
    daisy_dir.start()
    tag, small = tagged_message(500)
    with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=30) as s:
        s.sendmail("a@sender.test", [MBOX], small)
    checked = [check_tagged(m) for m in mbox_messages(path)]
    report("crash.mbox_append", kills=1, fragment_bytes=fragment, messages=len(checked))
    assert (tag, True) in checked


def _try_send(port: int, msg: bytes) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            s.sendmail("a@sender.test", [MBOX], msg)
    except (OSError, smtplib.SMTPException):
        pass


def _fill_mbox(path: Path, count: int) -> list[str]:
    tags = []
    with open(path, "wb") as f:
        for _ in range(count):
            tag, msg = tagged_message(random.choice([200, 2000, 20_000]))
            tags.append(tag)
            f.write(b"From load@sender.test  Thu Jan  1 00:00:00 2026\n")
            f.write(msg.replace(b"\r\n", b"\n") + b"\n")
    return tags


def test_sigkill_during_pop3_quit_rewrite(daisy_dir: Daisy) -> None:
    rounds = scale(4, 30)
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.cli("mailbox", "add", "mb", "--format", "mbox")
    daisy_dir.add_user(MBOX, "mb-pw", "--mailbox", "mb")
    path = daisy_dir.root / "mail/mb"
    path.parent.mkdir(parents=True, exist_ok=True)
    outcomes: Counter[str] = Counter()
    rnd = random.Random()
    for _ in range(rounds):
        before = _fill_mbox(path, 1500)
        daisy_dir.start()
        pop = poplib.POP3("127.0.0.1", daisy_dir.ports["pop3"], timeout=30)
        pop.user(MBOX)
        pop.pass_("mb-pw")
        count = len(pop.list()[1])
        assert count == len(before)
        doomed = set(rnd.sample(range(1, count + 1), count * 2 // 3))
        for n in sorted(doomed):
            pop.dele(n)
        after = [t for i, t in enumerate(before, 1) if i not in doomed]
        pop.sock.sendall(b"QUIT\r\n")
        time.sleep(rnd.uniform(0.0, 0.15))
        kill(daisy_dir)
        pop.close()
        tags = []
        for raw in mbox_messages(path):
            tag, intact = check_tagged(raw)
            assert intact, raw[:200]
            tags.append(tag)
        if tags == before:
            outcomes["old"] += 1
        elif tags == after:
            outcomes["new"] += 1
        else:
            outcomes["mixed"] += 1
    report("crash.pop3_quit", kills=rounds, **outcomes)
    assert outcomes["mixed"] == 0
    assert outcomes["old"] + outcomes["new"] == rounds
