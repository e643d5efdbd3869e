"""What mailbox quotas cost: counting a large Maildir, and port 25 with quotas on.

- usage: milliseconds to count a Maildir of N messages afresh (file names with the S=
  size field, as Daisy and Dovecot write them, and without, so every file is stat'ed),
  then through the cache SMTP and IMAP use (nothing changed: one stat per cur/ and
  new/), and after one more delivery (new/ changed: new/ alone is counted again);
- smtp: port 25 throughput (4 KiB, 10 senders) without a quota, then with ``[storage]
  quota`` set, so every RCPT checks the quota and every message is staged and checked
  again with its real size.

    python bench/quota_cost.py [--quick]      # prints the rows as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import smtp_load  # noqa: E402
from common import WORK, User  # noqa: E402
from mailauth_cost import CONCURRENCY, SIZE, _daisy  # noqa: E402

from daisymail.quota import RACY_NS, UsageCache, scan_usage  # noqa: E402


def _maildir(root: Path, messages: int, named: bool) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    body = b"x" * 4096
    for i in range(messages):
        name = f"{1700000000 + i}.M{i}P1Q{i}.bench" + (",S=4096,W=4200:2,S" if named else ":2,S")
        (root / "cur" / name).write_bytes(body)
    then = time.time_ns() - 10 * RACY_NS
    for d in (root, root / "cur", root / "new"):
        os.utime(d, ns=(then, then))


def _ms(fn: object, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3)


def usage(work: Path, messages: int, reps: int) -> list[dict[str, object]]:
    rows = []
    for named in (True, False):
        root = work / f"usage-{named}"
        _maildir(root, messages, named)
        rows.append(_usage_row(str(root), messages, named, reps))
        shutil.rmtree(root, ignore_errors=True)
    return rows


def _usage_row(root: str, messages: int, named: bool, reps: int) -> dict[str, object]:
    cache = UsageCache()
    cache.usage(root)
    cached = _ms(lambda: cache.usage(root), reps * 20)

    after = []
    for i in range(reps):  # one more message in new/: new/ alone is counted again
        with open(os.path.join(root, "new", f"n{i}.bench,S=10"), "wb") as f:
            f.write(b"y" * 10)
        after.append(_ms(lambda: cache.usage(root), 1))

    return {
        "figure": "usage",
        "messages": messages,
        "size_in_names": named,
        "scan_ms": _ms(lambda: scan_usage(root), reps),
        "cached_ms": cached,
        "after_delivery_ms": statistics.median(after),
    }


def smtp(work: Path, users: list[User], seconds: float) -> list[dict[str, object]]:
    rows = []
    for quota in (False, True):
        daisy = _daisy(work / f"smtp-{quota}", users)
        text = daisy.conf.read_text().replace('listen = ["127.0.0.1:2080"]', "listen = []")
        if quota:
            text = text.replace("[storage]", '[storage]\nquota = "10G"', 1)
        daisy.conf.write_text(text)
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
        rows.append(
            {"figure": "smtp", "quota": quota, "msg_per_s": r["msg_per_s"], "p99_ms": r["p99_ms"]}
        )
    return rows


def main() -> int:
    from common import users as bench_users

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    base = WORK / "quota"
    base.mkdir(parents=True, exist_ok=True)
    try:
        rows = usage(base, 1000 if args.quick else 10_000, 3 if args.quick else 7)
        rows += smtp(base, bench_users(WORK, 10), 1.0 if args.quick else 5.0)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
