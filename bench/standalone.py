"""Daisy on its own: SMTP and POP3 figures on a fresh data dir (no peers).

Sets up a temporary data dir with 20 users, starts `daisymail serve` on loopback,
runs bench/smtp_load.py (1, 10, 50 senders; 4 KiB and 100 KiB messages), fills every
mailbox with 100 messages of 4 KiB, runs bench/pop3_load.py (1 and 20 clients), and
prints one JSON document. The side-by-side comparison with Postfix and Dovecot is
bench/run's job.

    .venv/bin/python bench/standalone.py [--quick] > results.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import free_port

HERE = Path(__file__).resolve().parent
USERS = 20
PASSWORD = "bench-password"


def daisymail(conf: Path, *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "daisymail", "--config", str(conf), *args],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SystemExit("server exited during start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"port {port} never opened") from None
            time.sleep(0.1)


def run_json(args: list[str]) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    result: list[dict[str, object]] = json.loads(out.stdout)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small counts (seconds), for smoke runs")
    ap.add_argument("--data", help="data dir to use (default: a fresh temporary one)")
    args = ap.parse_args()
    root = Path(args.data or tempfile.mkdtemp(prefix="daisy-bench-"))
    conf = root / "daisymail.toml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "daisymail",
            "init",
            "--data",
            str(root),
            "--dev",
            "--hostname",
            "bench.test",
        ],
        check=True,
        capture_output=True,
    )
    smtp_port, pop3_port = free_port(), free_port()
    text = conf.read_text()
    text = text.replace('smtp = ["127.0.0.1:2525"]', f'smtp = ["127.0.0.1:{smtp_port}"]')
    text = text.replace('pop3 = ["127.0.0.1:2110"]', f'pop3 = ["127.0.0.1:{pop3_port}"]')
    for name in ("submission", "submissions", "pop3s", "imap", "imaps"):
        text = text.replace(f'{name} = ["127.0.0.1:', f'{name} = [] # ["127.0.0.1:', 1)
    conf.write_text(text)
    daisymail(conf, "domain", "add", "bench.test")
    for i in range(USERS):
        daisymail(
            conf, "user", "add", f"u{i}@bench.test", "--password-stdin", stdin=PASSWORD + "\n"
        )
    log = open(root / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "daisymail", "--config", str(conf), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_port(smtp_port, proc)
        wait_port(pop3_port, proc)
        n = 200 if args.quick else 2000
        smtp = run_json(
            [
                str(HERE / "smtp_load.py"),
                "--port",
                str(smtp_port),
                "--rcpt",
                "u0@bench.test",
                "--size",
                "4096",
                "102400",
                "--concurrency",
                "1",
                "10",
                "50",
                "--messages",
                str(n),
            ]
        )
        per_user = 10 if args.quick else 100
        for i in range(USERS):
            run_json(
                [
                    str(HERE / "smtp_load.py"),
                    "--port",
                    str(smtp_port),
                    "--rcpt",
                    f"u{i}@bench.test",
                    "--size",
                    "4096",
                    "--concurrency",
                    "1",
                    "--messages",
                    str(per_user),
                ]
            )
        # u0 got the SMTP run's messages too; drop its extra mail so all boxes match.
        box = root / "mail" / "u0.bench.test" / "new"
        for p in sorted(box.iterdir())[per_user:]:
            p.unlink()
        users = [f"u{i}@bench.test:{PASSWORD}" for i in range(USERS)]
        pop3 = run_json(
            [
                str(HERE / "pop3_load.py"),
                "--port",
                str(pop3_port),
                *[a for u in users for a in ("--user", u)],
                "--concurrency",
                "1",
                "20",
                "--seconds",
                "2" if args.quick else "10",
            ]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    doc = {
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "smtp": smtp,
        "pop3": pop3,
        "data_dir": str(root),
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
