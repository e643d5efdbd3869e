"""What mail authentication costs: Daisy alone, each figure with the feature off and on.

- inbound: port 25 throughput (4 KiB DKIM-signed messages, 10 and 50 senders) with [verify]
  off and on (SPF, DKIM, DMARC, ARC for every message, against a real DNS server on
  loopback that serves the sender's SPF, DKIM and DMARC records; Daisy's resolver
  caches them as it would on the Internet); the two servers measured in turn;
- outbound: messages relayed through the queue to an SMTP sink on loopback per second,
  without a DKIM key for the sender's domain, then with RSA-2048 + Ed25519 keys (two
  signatures per message), at the same sender counts.

At 10 senders the server is partly idle and each message waits for the one before it
from its sender, so a feature that adds latency (a round trip to a worker process)
costs throughput even when it costs little CPU; at 50 the server is busy throughout,
and what shows is the feature's cost in throughput, the figure the target is about.

    python bench/mailauth_cost.py [--quick]      # prints the rows as JSON
    python bench/mailauth_cost.py --figures inbound --seconds 5 --reps 3

bench/run runs it after the other phases (results["mailauth"]), on each filesystem the
SMTP loads ran on: every row names its filesystem ("fs"). On an ext4 without a journal
(the data folder here) creating a file scans past recently deleted inodes, and that
system time moves both settings by more than the feature costs; on the journaled ext4
image it does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import proctree  # noqa: E402
import smtp_load  # noqa: E402
from common import WORK, User, free_port  # noqa: E402
from servers import Daisy  # noqa: E402

SIZE = 4096
LEVELS = (10, 50)
"""Senders at once: 10 leaves the server part idle, so a feature's added latency shows;
50 keeps it busy, so what shows is the feature's cost in throughput."""
SENDER_DOMAIN = "example.net"  # smtp_load's MAIL FROM and From


class CountingSink:
    """The far end of outbound delivery: accepts everything, counts messages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.count = 0
        self.last = 0.0
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        ready.set()
        self._loop.run_until_complete(server.serve_forever())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink\r\n")
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    self.count += 1
                    self.last = time.perf_counter()
                    writer.write(b"250 ok\r\n")
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-sink\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


def _daisy(root: Path, users: list[User]) -> Daisy:
    daisy = Daisy(root, free_port(), free_port())
    daisy.prepare(users)
    (root / "mail").mkdir(exist_ok=True)
    _set(daisy, "[http]", "listen", "[]")  # the default port may be taken on a shared host
    return daisy


def _set(daisy: Daisy, section: str, key: str, value: str) -> None:
    text = daisy.conf.read_text()
    head, sep, rest = text.partition(f"\n{section}")
    rest = re.sub(rf"^{key} = .*$", f"{key} = {value}", rest, count=1, flags=re.M)
    daisy.conf.write_text(head + sep + rest)


def signed_message(keydir: Path) -> tuple[bytes, list[tuple[str, str]]]:
    """smtp_load's message as the sender's MTA would send it: with an RSA-2048 DKIM
    signature of example.net; and the DNS record of its key."""
    from daisymail.mailauth.dkim import signatures
    from daisymail.mailauth.keystore import KeyStore

    keys = KeyStore(keydir)
    keys.generate(SENDER_DOMAIN, "bench", "rsa")
    msg = smtp_load.make_message(SIZE, 0)
    signed = signatures(msg, keys.signing_keys(SENDER_DOMAIN)) + msg
    return signed, [("TXT", keys.keys(SENDER_DOMAIN)[0].record)]


async def load(
    port: int, rcpts: list[str], data: bytes, seconds: float, senders: int
) -> dict[str, float]:
    """``senders`` at once for ``seconds``, each message to one recipient in turn."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    done = await asyncio.gather(
        *(
            smtp_load.sender(
                "127.0.0.1",
                port,
                [[rcpts[(i + k) % len(rcpts)]] for k in range(len(rcpts))],
                data,
                0,
                latencies,
                deadline,
            )
            for i in range(senders)
        )
    )
    elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "messages": sum(done),
        "msg_per_s": round(sum(done) / elapsed, 1),
        "p99_ms": round(lat[min(int(0.99 * len(lat)), len(lat) - 1)] * 1000, 2) if lat else 0.0,
    }


def measured(
    daisy: Daisy, rcpts: list[str], data: bytes, seconds: float, senders: int
) -> dict[str, float]:
    """One load run, with the server's CPU time per accepted message (its verdict
    workers included): on a shared machine that moves far less than throughput, which
    waits on everyone's fsyncs."""
    assert daisy.proc is not None
    cpu0 = proctree.cpu_seconds([daisy.proc.pid])
    r = asyncio.run(load(daisy.smtp_port, rcpts, data, seconds, senders))
    cpu = proctree.cpu_seconds([daisy.proc.pid]) - cpu0
    r["cpu_ms"] = round(cpu * 1000 / max(r["messages"], 1), 3)
    return r


def _rows(
    runs: dict[tuple[bool, int], list[dict[str, float]]], figure: str, key: str
) -> list[dict[str, object]]:
    """One row per setting and sender count: medians of its runs."""
    rows: list[dict[str, object]] = []
    for (on, senders), results in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        row: dict[str, object] = {"figure": figure, key: on, "senders": senders}
        if "delivered" in results[0]:
            row["delivered"] = sum(int(r["delivered"]) for r in results)
        row["msg_per_s"] = statistics.median(r["msg_per_s"] for r in results)
        if "p99_ms" in results[0]:
            row["p99_ms"] = statistics.median(r["p99_ms"] for r in results)
        row["cpu_ms_per_msg"] = statistics.median(r["cpu_ms"] for r in results)
        row["runs"] = [r["msg_per_s"] for r in results]
        rows.append(row)
    return rows


def inbound(
    work: Path,
    users: list[User],
    seconds: float,
    reps: int = 3,
    levels: tuple[int, ...] = LEVELS,
) -> list[dict[str, object]]:
    """Both servers run side by side, share the DNS server, are warmed up alike (the
    resolver cache full, as on a busy MX), and are measured in turn, A B A B...; each
    row is the median of ``reps`` runs, for each sender count. The message carries a
    DKIM signature of the sender's domain, as real mail does, so "on" pays for a DKIM
    verification too."""
    from tests.dns_server import serve

    data, key_record = signed_message(work / "sender-keys")
    zone = {
        "@": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        "_dmarc": [("TXT", "v=DMARC1; p=none")],
        "bench._domainkey": key_record,
    }
    dns = serve(free_port(), [(SENDER_DOMAIN, zone)])
    rcpts = [u.address for u in users]
    daisies: dict[bool, Daisy] = {}
    runs: dict[tuple[bool, int], list[dict[str, float]]] = {}
    try:
        for checks in (False, True):
            daisy = _daisy(work / f"inbound-{checks}", users)
            _set(daisy, "[dns]", "nameservers", f'["{dns.address}"]')
            _set(daisy, "[verify]", "enabled", "true" if checks else "false")
            _set(daisy, "[relay]", "networks", '["127.0.0.9/32"]')
            daisy.start()
            daisies[checks] = daisy
        for daisy in daisies.values():  # warm-up: connections, caches, imports
            asyncio.run(load(daisy.smtp_port, rcpts, data, min(seconds, 1.0), levels[0]))
        for senders in levels:
            for _ in range(reps):
                for checks, daisy in daisies.items():
                    r = measured(daisy, rcpts, data, seconds, senders)
                    runs.setdefault((checks, senders), []).append(r)
    finally:
        for daisy in daisies.values():
            daisy.stop()
        dns.stop()
    log = (daisies[True].root / "server.log").read_text(errors="replace")
    if "spf=pass" not in log or "dkim=pass:" not in log:
        raise RuntimeError("inbound checks did not pass (no spf=pass, dkim=pass in the log)")
    return _rows(runs, "inbound", "checks")


def _outbound_daisy(root: Path, users: list[User], sink: CountingSink, signing: bool) -> Daisy:
    daisy = _daisy(root, users)
    text = daisy.conf.read_text().replace(
        "[queue.routes]", f'[queue.routes]\n"remote.bench" = "127.0.0.1:{sink.port}"', 1
    )
    daisy.conf.write_text(text)
    if signing:
        keygen = ["dkim", "keygen", SENDER_DOMAIN]
        subprocess.run(
            [sys.executable, "-m", "daisymail", "--config", str(daisy.conf), *keygen],
            check=True,
            capture_output=True,
        )
    return daisy


def relayed(
    daisy: Daisy, sink: CountingSink, seconds: float, senders: int = LEVELS[0]
) -> dict[str, float]:
    """Submit for ``seconds`` and wait until the sink has every accepted message: msg/s
    delivered from the first submission to the last arrival, and the server's CPU per
    message (submission, queue and delivery)."""
    assert daisy.proc is not None
    cpu0 = proctree.cpu_seconds([daisy.proc.pid])
    before = sink.count
    t0 = time.perf_counter()
    r = asyncio.run(
        smtp_load.run_level(
            "127.0.0.1",
            daisy.smtp_port,
            [f"r{i}@remote.bench" for i in range(20)],
            SIZE,
            senders,
            0,
            spread=True,
            seconds=seconds,
        )
    )
    accepted = int(r["messages"])
    deadline = time.perf_counter() + 300
    while sink.count - before < accepted:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {sink.count - before} of {accepted} messages arrived")
        time.sleep(0.02)
    cpu = proctree.cpu_seconds([daisy.proc.pid]) - cpu0
    return {
        "delivered": accepted,
        "msg_per_s": round(accepted / (sink.last - t0), 1),
        "cpu_ms": round(cpu * 1000 / max(accepted, 1), 3),
    }


def outbound(
    work: Path,
    users: list[User],
    seconds: float,
    reps: int = 3,
    levels: tuple[int, ...] = LEVELS,
) -> list[dict[str, object]]:
    """Unsigned and signed (RSA-2048 + Ed25519) side by side, each with its own sink,
    warmed up, measured in turn; each row is the median of ``reps`` runs, for each
    sender count."""
    servers: dict[bool, tuple[Daisy, CountingSink]] = {}
    runs: dict[tuple[bool, int], list[dict[str, float]]] = {}
    try:
        for signing in (False, True):
            sink = CountingSink()
            daisy = _outbound_daisy(work / f"outbound-{signing}", users, sink, signing)
            daisy.start()
            servers[signing] = (daisy, sink)
        for daisy, sink in servers.values():
            relayed(daisy, sink, min(seconds, 1.0))
        for senders in levels:
            for _ in range(reps):
                for signing, (daisy, sink) in servers.items():
                    r = relayed(daisy, sink, seconds, senders)
                    runs.setdefault((signing, senders), []).append(r)
    finally:
        for daisy, _sink in servers.values():
            daisy.stop()
    log = (servers[True][0].root / "server.log").read_text(errors="replace")
    if "dkim.key_unreadable" in log:
        raise RuntimeError("the signing server could not read its keys")
    return _rows(runs, "outbound", "dkim")


def mailauth_phase(
    work: Path,
    users: list[User],
    seconds: float,
    figures: tuple[str, ...] = ("inbound", "outbound"),
    reps: int = 3,
    fs: str = "data",
    levels: tuple[int, ...] = LEVELS,
) -> list[dict[str, object]]:
    """The rows of ``figures``, each tagged with ``fs`` (the filesystem of ``work``)."""
    base = work / "mailauth"
    shutil.rmtree(base, ignore_errors=True)
    rows: list[dict[str, object]] = []
    try:
        if "inbound" in figures:
            rows += inbound(base, users, seconds, reps, levels)
        if "outbound" in figures:
            rows += outbound(base, users, seconds, reps, levels)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return [{**r, "fs": fs} for r in rows]


def main() -> int:
    from common import users as bench_users

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, help="each run (default 5, quick 1)")
    ap.add_argument("--reps", type=int, default=3, help="runs per setting (median)")
    ap.add_argument(
        "--senders", type=int, nargs="+", default=list(LEVELS), help="senders at once, each"
    )
    ap.add_argument(
        "--figures", nargs="+", choices=("inbound", "outbound"), default=["inbound", "outbound"]
    )
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    reps = 1 if args.quick else args.reps
    users = bench_users(WORK, 10)
    rows = mailauth_phase(
        WORK, users, seconds, tuple(args.figures), reps, levels=tuple(args.senders)
    )
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
