"""POP3 load generator: logins per second and retrieval MB/s.

logins: each client connects, logs in with USER/PASS, QUITs, and repeats.
retrieve: each client logs in, RETRs every message (counting the bytes), QUITs
without deleting, and repeats. Each client takes its own share of the users given as
--user ADDRESS:PASSWORD (repeatable) and logs in as each of them in turn, so no two
clients ever open the same mailbox (one mailbox is open in one session at a time).

    python bench/pop3_load.py --port 2110 --user u1@example.test:pw --concurrency 1 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


async def _line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    if not line:
        raise ConnectionError("server closed the connection")
    return line


async def _cmd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cmd: bytes) -> bytes:
    writer.write(cmd + b"\r\n")
    await writer.drain()
    reply = await _line(reader)
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"{cmd.split()[0]!r} failed: {reply!r}")
    return reply


async def _session(host: str, port: int, user: str, password: str, retrieve: bool) -> int:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    await _line(reader)
    await _cmd(reader, writer, b"USER " + user.encode())
    await _cmd(reader, writer, b"PASS " + password.encode())
    got = 0
    if retrieve:
        count = int((await _cmd(reader, writer, b"STAT")).split()[1])
        writer.write(b"".join(b"RETR %d\r\n" % i for i in range(1, count + 1)))
        await writer.drain()
        for _ in range(count):
            await _line(reader)
            while True:
                line = await _line(reader)
                if line == b".\r\n":
                    break
                got += len(line)
    await _cmd(reader, writer, b"QUIT")
    writer.close()
    return got


async def run_level(
    host: str,
    port: int,
    users: list[tuple[str, str]],
    concurrency: int,
    seconds: float,
    retrieve: bool,
) -> dict[str, float]:
    deadline = time.perf_counter() + seconds
    sessions = 0
    octets = 0

    async def client(i: int) -> None:
        nonlocal sessions, octets
        mine = users[i::concurrency]
        n = 0
        while time.perf_counter() < deadline:
            user, password = mine[n % len(mine)]
            n += 1
            got = await _session(host, port, user, password, retrieve)
            octets += got  # not `octets += await ...`: that reads octets before awaiting
            sessions += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {
        "mode": "retrieve" if retrieve else "logins",
        "concurrency": concurrency,
        "sessions": sessions,
        "seconds": round(elapsed, 3),
        "logins_per_s": round(sessions / elapsed, 1),
        "mb_per_s": round(octets / elapsed / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2110)
    ap.add_argument("--user", action="append", required=True, help="ADDRESS:PASSWORD")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--mode", choices=["logins", "retrieve", "both"], default="both")
    args = ap.parse_args(argv)
    users = [tuple(u.rsplit(":", 1)) for u in args.user]
    modes = [False, True] if args.mode == "both" else [args.mode == "retrieve"]
    results = []
    for retrieve in modes:
        for c in args.concurrency:
            if c > len(users):
                print(f"{c} clients need {c} users; skipped", file=sys.stderr)
                continue
            r = asyncio.run(run_level(args.host, args.port, users, c, args.seconds, retrieve))  # type: ignore[arg-type]
            results.append(r)
            print(
                f"{r['mode']:>8} clients={c:>3} {r['logins_per_s']} sessions/s "
                f"{r['mb_per_s']} MB/s",
                file=sys.stderr,
            )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
