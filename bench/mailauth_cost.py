"""What mail authentication costs: Daisy alone, each figure with the feature off and on.

- inbound: port 25 throughput (4 KiB, 10 senders) with [verify] off, then on (SPF,
  DKIM, DMARC, ARC for every message, against a real DNS server on loopback that
  serves the sender's SPF and DMARC records; Daisy's resolver caches them as it would
  on the Internet);
- outbound: messages relayed through the queue to an SMTP sink on loopback per second,
  without a DKIM key for the sender's domain, then with RSA-2048 + Ed25519 keys (two
  signatures per message).

    python bench/mailauth_cost.py [--quick]      # prints the rows as JSON

bench/run runs it after the SMTP and POP3 phases (results["mailauth"]).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import smtp_load  # noqa: E402
from common import WORK, User, free_port  # noqa: E402
from servers import Daisy  # noqa: E402

SIZE = 4096
CONCURRENCY = 10
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
    return daisy


def _set(daisy: Daisy, section: str, key: str, value: str) -> None:
    text = daisy.conf.read_text()
    head, sep, rest = text.partition(f"\n{section}")
    rest = re.sub(rf"^{key} = .*$", f"{key} = {value}", rest, count=1, flags=re.M)
    daisy.conf.write_text(head + sep + rest)


def inbound(work: Path, users: list[User], seconds: float) -> list[dict[str, object]]:
    from tests.dns_server import serve

    zone = {
        "@": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        "_dmarc": [("TXT", "v=DMARC1; p=none")],
    }
    dns = serve(free_port(), [(SENDER_DOMAIN, zone)])
    rows = []
    try:
        for checks in (False, True):
            daisy = _daisy(work / f"inbound-{checks}", users)
            _set(daisy, "[dns]", "nameservers", f'["{dns.address}"]')
            _set(daisy, "[verify]", "enabled", "true" if checks else "false")
            _set(daisy, "[relay]", "networks", '["127.0.0.9/32"]')
            daisy.start()
            try:
                r = asyncio.run(
                    smtp_load.run_level(
                        "127.0.0.1",
                        daisy.smtp_port,
                        [u.address for u in users],
                        SIZE,
                        CONCURRENCY,
                        0,
                        spread=True,
                        seconds=seconds,
                    )
                )
            finally:
                daisy.stop()
            log = (daisy.root / "server.log").read_text(errors="replace")
            if checks and "spf=pass" not in log:
                raise RuntimeError("inbound checks did not run (no spf=pass in the log)")
            rows.append(
                {
                    "figure": "inbound",
                    "checks": checks,
                    "msg_per_s": r["msg_per_s"],
                    "p99_ms": r["p99_ms"],
                }
            )
    finally:
        dns.stop()
    return rows


def outbound(work: Path, users: list[User], seconds: float) -> list[dict[str, object]]:
    rows = []
    for signing in (False, True):
        sink = CountingSink()
        daisy = _daisy(work / f"outbound-{signing}", users)
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
        daisy.start()
        try:
            t0 = time.perf_counter()
            r = asyncio.run(
                smtp_load.run_level(
                    "127.0.0.1",
                    daisy.smtp_port,
                    [f"r{i}@remote.bench" for i in range(20)],
                    SIZE,
                    CONCURRENCY,
                    0,
                    spread=True,
                    seconds=seconds,
                )
            )
            accepted = int(r["messages"])
            deadline = time.perf_counter() + 300
            while sink.count < accepted:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"only {sink.count} of {accepted} messages arrived")
                time.sleep(0.05)
            elapsed = sink.last - t0
        finally:
            daisy.stop()
        rows.append(
            {
                "figure": "outbound",
                "dkim": signing,
                "delivered": sink.count,
                "msg_per_s": round(sink.count / elapsed, 1),
            }
        )
    return rows


def mailauth_phase(work: Path, users: list[User], seconds: float) -> list[dict[str, object]]:
    base = work / "mailauth"
    try:
        return inbound(base, users, seconds) + outbound(base, users, seconds)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    from common import users as bench_users

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = mailauth_phase(WORK, bench_users(WORK, 10), 1.0 if args.quick else 5.0)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
