"""Relaying large messages costs a fixed buffer each, not the message size (issue 11, 7).

Ten 20 MB messages are put into the queue at once, routed to a sink that reads and
discards; the server's resident memory is sampled meanwhile. Reading each message whole
(as the runner did, with aiosmtplib copying it twice more) grew it by several hundred MB.
A small local delivery during the relay must still be answered at once.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from daisymail.queue.spool import Queue, QueuedRecipient
from tests.conftest import Daisy, free_port
from tests.reliability.conftest import report, wait_for

MESSAGES = 10
SIZE = 20 * 1024 * 1024
LINE = b"x" * 70 + b"\n"
DOT_LINE = b".starts with a dot\n"


def body_chunks() -> Iterator[bytes]:
    yield b"Subject: big\nMessage-ID: <big@example.test>\n\n"
    block = (LINE * 99 + DOT_LINE) * 100  # about 700 KB
    for _ in range(SIZE // len(block) + 1):
        yield block


class DiscardSink:
    """Accepts everything and keeps only a byte count per message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sizes: list[int] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        async def start() -> None:
            await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-sink\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                    size, tail = 0, b""
                    while not tail.endswith(b"\r\n.\r\n"):
                        chunk = await reader.read(1 << 16)
                        if not chunk:
                            return
                        size += len(chunk)
                        tail = (tail + chunk)[-5:]
                    self.sizes.append(size)
                    writer.write(b"250 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_relaying_ten_20mb_messages_keeps_memory_flat(daisy_dir: Daisy) -> None:
    sink = DiscardSink()
    try:
        text = daisy_dir.config.read_text().replace(
            "[queue.routes]", f'[queue.routes]\n"big.test" = "127.0.0.1:{sink.port}"', 1
        )
        daisy_dir.config.write_text(text)
        daisy_dir.cli("domain", "add", "example.test")
        daisy_dir.add_user("demo@example.test", "demo-pw")
        daisy_dir.start()
        assert daisy_dir.proc is not None
        pid = daisy_dir.proc.pid
        queue = Queue(str(daisy_dir.root / "queue"))
        prepared = [
            queue.prepare(body_chunks(), "demo@example.test", [QueuedRecipient(f"r{i}@big.test")])
            for i in range(MESSAGES)
        ]
        time.sleep(0.5)
        baseline = rss_kb(pid)
        peak = baseline
        for p in prepared:  # all ten become visible to the runner at once
            p.commit()
        wait_for(lambda: sink.sizes or rss_kb(pid) > baseline + 2048, 20, "relay started")
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as s:
            s.sendmail("x@remote.test", ["demo@example.test"], b"Subject: small\r\n\r\nhi\r\n")
        local_seconds = time.monotonic() - started
        deadline = time.monotonic() + 120
        while len(sink.sizes) < MESSAGES:
            assert time.monotonic() < deadline, f"only {len(sink.sizes)} relayed"
            peak = max(peak, rss_kb(pid))
            time.sleep(0.02)
        growth_mb = (peak - baseline) / 1024
        report("queue_memory", growth_mb=round(growth_mb, 1), local_seconds=local_seconds)
        assert all(size > SIZE for size in sink.sizes)
        assert growth_mb < 100, f"RSS grew by {growth_mb:.0f} MB relaying {MESSAGES} x 20 MB"
        assert local_seconds < 1.0, f"local delivery took {local_seconds:.2f} s during the relay"
    finally:
        sink.stop()
