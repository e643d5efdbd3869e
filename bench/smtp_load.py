"""SMTP load generator: accepted (and so durably stored) messages per second.

Each sender keeps one connection and sends messages back to back with PIPELINING
(MAIL, RCPT and DATA in one write); a message counts when its 250 after the final dot
arrives, which for Daisy means every copy is fsync'd (Postfix delivers to the mailbox
later: bench/run waits for the files). Reports throughput and p50/p99 transaction
latency per concurrency level as JSON. With --spread each message goes to one of the
--rcpt addresses in turn instead of to all of them; with --seconds each sender stops
starting messages when the time is up instead of after a fixed count.

    python bench/smtp_load.py --port 2525 --rcpt demo@example.test \\
        --size 4096 --concurrency 1 10 50 --messages 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time


def make_message(size: int, n: int) -> bytes:
    head = (
        f"From: bench@example.net\r\nTo: rcpt@example.test\r\nSubject: bench {n}\r\n\r\n".encode()
    )
    line = b"abcdefghijklmnopqrstuvwxyz0123456789 The quick brown fox jumps over the lazy dog.\r\n"
    body = (line * (max(size - len(head), 0) // len(line) + 1))[: max(size - len(head), 0)]
    if not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n" if len(body) >= 2 else b"\r\n"
    return head + body


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def sender(
    host: str,
    port: int,
    envelopes: list[list[str]],
    data: bytes,
    count: int,
    latencies: list[float],
    deadline: float | None = None,
) -> int:
    """Send count messages (or until deadline), cycling through envelopes' recipients."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    await read_reply(reader)
    writer.write(b"EHLO bench.example\r\n")
    await writer.drain()
    await read_reply(reader)
    rcpt_cmds = [b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in env) for env in envelopes]
    ok = 0
    n = 0
    while n < count if deadline is None else time.perf_counter() < deadline:
        cmds = rcpt_cmds[n % len(rcpt_cmds)]
        n += 1
        t0 = time.perf_counter()
        writer.write(b"MAIL FROM:<bench@example.net>\r\n" + cmds + b"DATA\r\n")
        await writer.drain()
        replies = [await read_reply(reader) for _ in range(cmds.count(b"\r\n") + 2)]
        if not replies[-1].startswith(b"354"):
            raise RuntimeError(f"DATA refused: {replies!r}")
        writer.write(data + b".\r\n")
        await writer.drain()
        final = await read_reply(reader)
        if final.startswith(b"250"):
            ok += 1
            latencies.append(time.perf_counter() - t0)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return ok


async def run_level(
    host: str,
    port: int,
    rcpts: list[str],
    size: int,
    concurrency: int,
    messages: int,
    *,
    spread: bool = False,
    seconds: float | None = None,
) -> dict[str, float]:
    data = make_message(size, 0)
    per = max(messages // concurrency, 1)
    latencies: list[float] = []
    t0 = time.perf_counter()
    deadline = None if seconds is None else t0 + seconds

    def envelopes(i: int) -> list[list[str]]:
        if not spread:
            return [rcpts]
        # Sender i starts at its own recipient, so the senders spread over the mailboxes.
        return [[rcpts[(i + k) % len(rcpts)]] for k in range(len(rcpts))]

    done = await asyncio.gather(
        *(
            sender(host, port, envelopes(i), data, per, latencies, deadline)
            for i in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - t0
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(int(p * len(lat)), len(lat) - 1)] * 1000 if lat else 0.0

    return {
        "size": size,
        "concurrency": concurrency,
        "messages": sum(done),
        "seconds": round(elapsed, 3),
        "msg_per_s": round(sum(done) / elapsed, 1),
        "p50_ms": round(pct(0.5), 2),
        "p99_ms": round(pct(0.99), 2),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--rcpt", action="append", required=True, help="recipient (repeatable)")
    ap.add_argument("--size", type=int, nargs="+", default=[4096])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--messages", type=int, default=1000, help="messages per level")
    ap.add_argument("--seconds", type=float, help="send for this long per level instead")
    ap.add_argument("--spread", action="store_true", help="one --rcpt per message, in turn")
    args = ap.parse_args(argv)
    results = []
    for size in args.size:
        for c in args.concurrency:
            r = asyncio.run(
                run_level(
                    args.host,
                    args.port,
                    args.rcpt,
                    size,
                    c,
                    args.messages,
                    spread=args.spread,
                    seconds=args.seconds,
                )
            )
            results.append(r)
            print(
                f"size={size:>7} senders={c:>4} {r['msg_per_s']:>8} msg/s "
                f"p50={r['p50_ms']}ms p99={r['p99_ms']}ms",
                file=sys.stderr,
            )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
