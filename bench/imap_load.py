#!/usr/bin/env python3
"""IMAP: Daisy next to Dovecot on copies of the same Maildirs.

Three figures, each taken on both servers in turn (A B A B ...):

* a mail program opening a folder: LOGIN, SELECT INBOX and FETCH 1:* (FLAGS ENVELOPE)
  over 1,000 messages, one complete session at a time (sessions/s);
* UID FETCH 1:* BODY.PEEK[] of 100 KiB messages (MB/s of message data received), stored
  with CRLF line ends (as APPEND and most migrations leave them) and with LF ones (as
  Daisy and Dovecot store delivered mail: both servers convert them as they send);
* memory of many idle IDLE sessions (LOGIN, SELECT INBOX, IDLE; held), Daisy only
  unless --idle-dovecot: the RSS of the server's process tree once all are idling.

Both servers verify the same argon2id password hash (Dovecot's passwd-file with
scheme=ARGON2ID), so a login costs the same on both sides.

    .venv/bin/python bench/imap_load.py [--quick] [--daisy-only] [--idle N] > imap.json

bench/run calls run() for its IMAP rows. Dovecot needs root (its own instance, with
its own base_dir, on a loopback port; /etc/dovecot is left alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import WORK, free_port  # noqa: E402
from idle import raise_fd_limit  # noqa: E402
from proctree import memory, tree  # noqa: E402
from servers import wait_port  # noqa: E402

USER, DOMAIN, PASSWORD = "bench", "imap.bench.test", "bench-password"
ADDRESS = f"{USER}@{DOMAIN}"
INBOX_MESSAGES = 1000
BODY_SIZE = 100 * 1024


def _message(i: int, size: int) -> bytes:
    head = (
        f"Return-Path: <sender{i % 37}@example.net>\r\n"
        f"Received: from mx.example.net by imap.bench.test;\r\n"
        f" Mon, 2 Jan 2023 10:{i % 60:02d}:00 +0000\r\n"
        f'From: "Sender {i % 37}" <sender{i % 37}@example.net>\r\n'
        f"To: Bench <{ADDRESS}>, other{i % 5}@example.org\r\n"
        f"Cc: list{i % 3}@lists.example.org\r\n"
        f"Subject: =?utf-8?q?message_{i}_caf=C3=A9?= about item {i}\r\n"
        f"Date: Mon, 2 Jan 2023 10:{i % 60:02d}:00 +0000\r\n"
        f"Message-ID: <{i}.bench@example.net>\r\n"
        f"In-Reply-To: <{i - 1}.bench@example.net>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    return head + (line * (size // len(line) + 1))[: max(0, size - len(head))]


def fill(maildir: Path, count: int, size: int, lf: bool = False) -> None:
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    base = 1672000000
    for i in range(count):
        seen = i % 3 != 0
        name = f"{base + i}.M{i}P1.bench" + (":2,S" if seen else "")
        path = maildir / ("cur" if seen else "new") / name
        data = _message(i, size)
        path.write_bytes(data.replace(b"\r\n", b"\n") if lf else data)
        os.utime(path, (base + i, base + i))


def mail_tree(root: Path, quick: bool) -> None:
    """INBOX with 1,000 messages of about 4 KiB, and folders Bodies and BodiesLF with
    100 KiB ones (CRLF and LF line ends)."""
    fill(root, INBOX_MESSAGES, 4096)
    fill(root / ".Bodies", 40 if quick else 200, BODY_SIZE)
    fill(root / ".BodiesLF", 40 if quick else 200, BODY_SIZE, lf=True)
    fill(root / ".Empty", 0, 0)  # for --idle-folder Empty: what a session costs by itself


def _argon2_hash() -> str:
    from daisymail.directory.passwords import hash_password

    return hash_password(PASSWORD)


# -- servers -------------------------------------------------------------------------------
class DaisyImap:
    name = "daisy"

    def __init__(self, root: Path, quick: bool, idle: int) -> None:
        self.root, self.port = root, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        cli = [sys.executable, "-m", "daisymail"]
        subprocess.run(
            [*cli, "init", "--data", str(root), "--dev", "--hostname", "daisy.bench.test"],
            check=True,
            capture_output=True,
        )
        conf = root / "daisymail.toml"
        text = conf.read_text()
        for svc in ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps"):
            value = f'["127.0.0.1:{self.port}"]' if svc == "imap" else "[]"
            if svc == "smtp":
                value = f'["127.0.0.1:{free_port()}"]'
            text = re.sub(rf"^{svc} = \[.*?\]", f"{svc} = {value}", text, flags=re.M)
        # No HTTP API: its fixed dev port may be taken by another server on the machine.
        text = re.sub(r"^listen = \[.*?\]", "listen = []", text, flags=re.M)
        connections = max(2000, idle + 100)
        text = re.sub(
            r"^max_connections = \d+", f"max_connections = {connections}", text, flags=re.M
        )
        text = re.sub(
            r"^max_connections_per_ip = \d+",
            f"max_connections_per_ip = {connections}",
            text,
            flags=re.M,
        )
        conf.write_text(text)
        self.conf = conf
        run = [*cli, "--config", str(conf)]
        subprocess.run([*run, "domain", "add", DOMAIN], check=True, capture_output=True)
        subprocess.run(
            [*run, "user", "add", ADDRESS, "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        mailbox = root / "mail" / f"{USER}.{DOMAIN}"
        shutil.rmtree(mailbox, ignore_errors=True)
        mail_tree(mailbox, quick)

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives with the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daisymail", "--config", str(self.conf), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_port(self.port, self.proc)
        except SystemExit:
            tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"daisy did not start:\n{tail}") from None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)
            self.proc = None

    def roots(self) -> list[int]:
        return [self.proc.pid] if self.proc else []


DOVECOT_CONF = """\
instance_name = daisy-bench-imap
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = {uid}
mail_location = maildir:{mail}
default_process_limit = {processes}
default_client_limit = {clients}
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  process_min_avail = 2
}}
service imap {{
  process_limit = {processes}
}}
protocol imap {{
  mail_max_userip_connections = {clients}
}}
"""


class DovecotImap:
    """Dovecot's own instance: imap-login and imap processes (one per session)."""

    name = "dovecot"

    def __init__(self, root: Path, quick: bool, idle: int, password_hash: str) -> None:
        self.dir, self.port = root, free_port()
        mail = root / "Maildir"
        mail_tree(mail, quick)
        (root / "home").mkdir()
        uid = gid = 65534
        (root / "passwd").write_text(f"{ADDRESS}:{{ARGON2ID}}{password_hash}\n")
        self.conf = root / "dovecot.conf"
        self.conf.write_text(
            DOVECOT_CONF.format(
                dir=root,
                mail=mail,
                uid=uid,
                gid=gid,
                port=self.port,
                processes=max(1100, idle + 100),
                clients=max(3000, idle + 100),
            )
        )
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(mail), str(root / "home")], check=True)
        root.chmod(0o755)

    def start(self) -> None:
        subprocess.run(["dovecot", "-c", str(self.conf)], check=True)
        wait_port(self.port)

    def stop(self) -> None:
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], capture_output=True)
        pidfile = self.dir / "run" / "master.pid"
        deadline = time.monotonic() + 30
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def roots(self) -> list[int]:
        pidfile = self.dir / "run" / "master.pid"
        return [int(pidfile.read_text())] if pidfile.exists() else []


# -- the client ------------------------------------------------------------------------------
class Session:
    """A minimal IMAP client that counts octets and reads literals exactly."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w, self.n, self.received = reader, writer, 0, 0

    @classmethod
    async def open(cls, port: int) -> Session:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        s = cls(reader, writer)
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting: {greeting!r}")
        return s

    async def command(self, text: str) -> int:
        """Send one command, read to its tagged reply; the octets received."""
        self.n += 1
        tag = f"b{self.n}".encode()
        self.w.write(tag + b" " + text.encode() + b"\r\n")
        got = 0
        while True:
            line = await self.r.readline()
            if not line:
                raise RuntimeError("connection closed")
            got += len(line)
            m = re.search(rb"\{(\d+)\}\r\n\Z", line)
            if m:
                data = await self.r.readexactly(int(m[1]))
                got += len(data)
                continue
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text}: {line!r}")
                self.received += got
                return got

    async def login(self) -> None:
        await self.command(f'LOGIN "{ADDRESS}" "{PASSWORD}"')

    async def close(self) -> None:
        try:
            await self.command("LOGOUT")
        except (RuntimeError, OSError):
            pass
        self.w.close()


async def open_folder(port: int, sessions: int) -> dict[str, float]:
    """LOGIN + SELECT INBOX + FETCH 1:* (FLAGS ENVELOPE), complete sessions one at a time."""
    times = []
    for _ in range(sessions):
        t0 = time.perf_counter()
        s = await Session.open(port)
        await s.login()
        await s.command("SELECT INBOX")
        got = await s.command("FETCH 1:* (FLAGS ENVELOPE)")
        await s.close()
        times.append(time.perf_counter() - t0)
        if got < INBOX_MESSAGES * 100:
            raise RuntimeError(f"FETCH answered only {got} octets")
    med = statistics.median(times)
    return {"sessions": sessions, "median_s": round(med, 4), "sessions_per_s": round(1 / med, 2)}


async def fetch_bodies(port: int, rounds: int, folder: str = "Bodies") -> dict[str, float]:
    s = await Session.open(port)
    await s.login()
    await s.command(f"EXAMINE {folder}")
    await s.command("UID FETCH 1:* BODY.PEEK[]")  # warm the page cache and the server
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        got = await s.command("UID FETCH 1:* BODY.PEEK[]")
        rates.append(got / (time.perf_counter() - t0) / 1e6)
    await s.close()
    return {"rounds": rounds, "mb_per_s": round(statistics.median(rates), 1)}


async def hold_idle(
    port: int, count: int, roots: list[int], folder: str = "INBOX"
) -> dict[str, object]:
    """Open count sessions idling on INBOX (a batch at a time); measure; close them."""
    held: list[Session] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        try:
            s = await Session.open(port)
            await s.login()
            await s.command(f"SELECT {folder}")
            s.w.write(b"i IDLE\r\n")
            line = await asyncio.wait_for(s.r.readline(), 60)
            if not line.startswith(b"+"):
                raise RuntimeError(line)
            held.append(s)
        except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError):
            failed += 1

    t0 = time.perf_counter()
    for start in range(0, count, 100):
        await asyncio.gather(*(one() for _ in range(min(100, count - start))))
    opened = time.perf_counter() - t0
    await asyncio.sleep(2)
    pids = sorted({p for r in roots for p in tree(r)})
    mem = memory(roots)
    for s in held:
        s.w.close()
    return {
        "idle": count,
        "held": len(held),
        "failed": failed,
        "open_s": round(opened, 1),
        "processes": len(pids),
        "rss_mb": mem.rss_mb,
        "pss_mb": mem.pss_mb,
    }


# -- the run ---------------------------------------------------------------------------------
def run(
    quick: bool,
    peers: bool,
    idle: int,
    reps: int,
    idle_dovecot: bool = False,
    idle_folder: str = "INBOX",
    skip_load: bool = False,
) -> dict[str, object]:
    raise_fd_limit(2 * idle + 1000)
    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="daisy-imap-bench-", dir=WORK))
    work.chmod(0o755)
    servers: list[DaisyImap | DovecotImap] = [DaisyImap(work / "daisy", quick, idle)]
    if peers:
        servers.append(DovecotImap(work / "dovecot", quick, idle, _argon2_hash()))
    rows: list[dict[str, object]] = []
    sessions = 5 if quick else 20
    try:
        for srv in servers:
            srv.start()
        for rep in range(0 if skip_load else reps):
            for srv in servers:
                r = asyncio.run(open_folder(srv.port, sessions))
                rows.append({"figure": "open_folder", "server": srv.name, "rep": rep, **r})
                print(f"imap open folder {srv.name}: {r}", file=sys.stderr, flush=True)
                for figure, folder in (("fetch_bodies", "Bodies"), ("fetch_bodies_lf", "BodiesLF")):
                    r = asyncio.run(fetch_bodies(srv.port, 3, folder))
                    rows.append({"figure": figure, "server": srv.name, "rep": rep, **r})
                    print(f"imap {figure} {srv.name}: {r}", file=sys.stderr, flush=True)
        for srv in servers:
            if srv.name == "dovecot" and not idle_dovecot:
                continue
            srv.stop()
            srv.start()
            time.sleep(1)
            before = memory(srv.roots())
            r = asyncio.run(hold_idle(srv.port, idle, srv.roots(), idle_folder))
            r.update(before_rss_mb=before.rss_mb, folder=idle_folder)
            rows.append({"figure": "idle", "server": srv.name, **r})
            print(f"imap idle {srv.name}: {r}", file=sys.stderr, flush=True)
    finally:
        for srv in servers:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"rows": rows, "quick": quick, "idle": idle, "messages": INBOX_MESSAGES}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small counts, for checking the harness")
    ap.add_argument("--daisy-only", action="store_true", help="no Dovecot (no root needed)")
    ap.add_argument("--idle", type=int, help="idle IDLE sessions (default 10000, quick 500)")
    ap.add_argument("--idle-dovecot", action="store_true", help="measure Dovecot's idle too")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, quick 2)")
    ap.add_argument("--idle-folder", default="INBOX", help="the folder idle sessions select")
    ap.add_argument("--idle-only", action="store_true", help="only the idle figure")
    args = ap.parse_args()
    if not args.daisy_only and os.geteuid() != 0:
        raise SystemExit("bench/imap_load.py: Dovecot needs root (or: --daisy-only)")
    idle = args.idle or (500 if args.quick else 10000)
    result = run(
        args.quick,
        not args.daisy_only,
        idle,
        args.reps or (2 if args.quick else 3),
        args.idle_dovecot,
        args.idle_folder,
        args.idle_only,
    )
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
