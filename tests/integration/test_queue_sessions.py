"""Queue deliveries reuse SMTP sessions to the same hop (queue/sessions.py), against a
real SMTP server on loopback: one connection for a stream of messages, a QUIT once it
has been idle its time, and a session the server dropped while idle costs the next
message nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from daisymail.queue import remote, sessions
from daisymail.queue.sessions import SessionCache
from daisymail.queue.stream import Body
from tests.conftest import Daisy
from tests.integration.smtp_sink import Sink
from tests.integration.test_queue_delivery import configure, send


def _body(tmp_path: Path, n: int) -> Body:
    path = tmp_path / f"m{n}"
    path.write_bytes(f"Subject: {n}\n\nmessage {n}\n".encode())
    return Body.scan(str(path))


async def _deliver(
    sink: Sink, cache: SessionCache | None, body: Body, keep: float = 2.0
) -> remote.Outcome:
    route = remote.Route("route:remote.test", (remote.Hop("127.0.0.1", sink.port),))
    rcpt = remote.Outgoing("friend@remote.test")
    out = await remote.deliver(
        route, "a@example.test", [rcpt], body, helo="mx.test", sessions=cache, keep_seconds=keep
    )
    return out[rcpt.address]


def test_a_stream_of_messages_shares_one_session(sink: Sink, tmp_path: Path) -> None:
    async def run() -> None:
        cache = SessionCache()
        for n in range(5):
            assert (await _deliver(sink, cache, _body(tmp_path, n))).kind == "delivered"
        assert cache.idle() == 1
        await cache.close()

    asyncio.run(run())
    assert [m[2] for m in sink.messages] == [
        f"Subject: {n}\r\n\r\nmessage {n}\r\n".encode() for n in range(5)
    ]
    assert (sink.connections, sink.quits) == (1, 1)


def test_without_a_cache_or_with_no_idle_time_each_message_has_its_own(
    sink: Sink, tmp_path: Path
) -> None:
    async def run() -> None:
        cache = SessionCache()
        for n in range(2):
            assert (await _deliver(sink, None, _body(tmp_path, n))).kind == "delivered"
            assert (await _deliver(sink, cache, _body(tmp_path, n), keep=0)).kind == "delivered"
        await cache.close()

    asyncio.run(run())
    assert len(sink.messages) == 4
    assert (sink.connections, sink.quits) == (4, 4)


def test_an_idle_session_is_closed_with_quit_after_its_time(sink: Sink, tmp_path: Path) -> None:
    async def run() -> None:
        cache = SessionCache()
        assert (await _deliver(sink, cache, _body(tmp_path, 0), keep=0.2)).kind == "delivered"
        cache.expire()
        assert cache.idle() == 1  # not yet
        await asyncio.sleep(0.3)
        cache.expire()
        assert cache.idle() == 0
        await cache.close()  # waits for the QUIT

    asyncio.run(run())
    assert (sink.connections, sink.quits) == (1, 1)


def test_a_session_the_server_dropped_while_idle_costs_the_next_message_nothing(
    sink: Sink, tmp_path: Path
) -> None:
    async def run() -> None:
        cache = SessionCache()
        assert (await _deliver(sink, cache, _body(tmp_path, 0))).kind == "delivered"
        sink.hang_up()
        await asyncio.sleep(0.05)
        assert (await _deliver(sink, cache, _body(tmp_path, 1))).kind == "delivered"
        await cache.close()

    asyncio.run(run())
    assert [m[2].split(b"\r\n")[0] for m in sink.messages] == [b"Subject: 0", b"Subject: 1"]
    assert sink.connections == 2


def test_a_session_is_retired_after_its_uses(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "MAX_USES", 2)

    async def run() -> None:
        cache = SessionCache()
        for n in range(5):
            assert (await _deliver(sink, cache, _body(tmp_path, n))).kind == "delivered"
        await cache.close()

    asyncio.run(run())
    assert len(sink.messages) == 5
    assert (sink.connections, sink.quits) == (3, 3)


def test_a_refused_message_leaves_the_session_usable(tmp_path: Path) -> None:
    sink = Sink(data_reply=b"550 5.7.1 no thanks")
    try:

        async def run() -> None:
            cache = SessionCache()
            for n in range(2):
                outcome = await _deliver(sink, cache, _body(tmp_path, n))
                assert (outcome.kind, outcome.status) == ("permanent", "5.7.1")
            await cache.close()

        asyncio.run(run())
        assert sink.connections == 1
    finally:
        sink.stop()


def test_the_server_queue_reuses_a_session_and_quits_it_at_shutdown(
    daisy_dir: Daisy, sink: Sink
) -> None:
    configure(daisy_dir, sink.port)
    daisy_dir.set_config("[queue]", "idle_connection_seconds", "30")
    daisy_dir.set_config("[queue]", "destination_concurrency", "1")
    daisy_dir.start()
    try:
        for n in range(3):
            send(daisy_dir, f"friend{n}@remote.test")
        deadline = time.monotonic() + 20
        while len(sink.messages) < 3:
            assert time.monotonic() < deadline, daisy_dir.logs()
            time.sleep(0.05)
        assert sink.quits == 0  # still open, waiting for the next message
    finally:
        daisy_dir.stop()
    assert sorted(m[1][0] for m in sink.messages) == [f"friend{n}@remote.test" for n in range(3)]
    assert (sink.connections, sink.quits) == (1, 1)
