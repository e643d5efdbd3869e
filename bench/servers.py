"""Start, stop and locate the servers under test: Daisy, Postfix and Dovecot.

Each server reads its mailboxes through a symbolic link (Daisy's `mail`, the peers'
`peer-mail`) that the harness points at a fresh folder for every run, so no run
inherits the directories, or the deletions, of the one before. The peers' configuration
itself is written by bench/peers/configure.py.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import (
    DAISY_POP3_PORT,
    DAISY_SMTP_PORT,
    DOVECOT_POP3_PORT,
    MAIL_UID_NAME,
    POSTFIX_SMTP_PORT,
    WORK,
    User,
)

# What a deployment needs to be measured at 200 senders and 2,000 idle connections:
# Daisy's defaults (2,000 in total, 50 per client address) would refuse the load itself.
DAISY_LIMITS = {"max_connections": 5000, "max_connections_per_ip": 5000}


def wait_port(port: int, alive: object = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if isinstance(alive, subprocess.Popen) and alive.poll() is not None:
            raise RuntimeError(f"server exited during start (port {port})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} never opened") from None
            time.sleep(0.1)


def mail_ids() -> tuple[int, int]:
    pw = pwd.getpwnam(MAIL_UID_NAME)
    return pw.pw_uid, pw.pw_gid


class Daisy:
    """One Daisy data dir (made fresh by prepare) and its `daisymail serve` process."""

    name = "daisy"

    def __init__(
        self, root: Path, smtp_port: int = DAISY_SMTP_PORT, pop3_port: int = DAISY_POP3_PORT
    ) -> None:
        self.root = root
        self.conf = root / "daisymail.toml"
        self.mail_link = root / "mail"
        self.smtp_port = smtp_port
        self.pop3_port = pop3_port
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self, users: list[User]) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "daisymail",
                "init",
                "--data",
                str(self.root),
                "--dev",
                "--hostname",
                "daisy.bench.test",
            ],
            check=True,
            capture_output=True,
        )
        text = self.conf.read_text()
        ports = {"smtp": self.smtp_port, "pop3": self.pop3_port}
        for svc in ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps"):
            value = f'["127.0.0.1:{ports[svc]}"]' if svc in ports else "[]"
            text = re.sub(rf"^{svc} = \[.*?\]", f"{svc} = {value}", text, flags=re.M)
        for key, value in DAISY_LIMITS.items():
            text = re.sub(rf"^{key} = \d+", f"{key} = {value}", text, flags=re.M)
        # No HTTP API: its fixed dev port is often taken by another server on the machine.
        text = re.sub(r"^listen = \[.*?\]", "listen = []", text, flags=re.M)
        self.conf.write_text(text)
        self._add_users(users)
        (self.root / "mail").rmdir()

    def _add_users(self, users: list[User]) -> None:
        from daisymail.config import load
        from daisymail.directory.factory import open_directory
        from daisymail.directory.model import AddressRule, Domain, Login, Mailbox

        d = open_directory(load(str(self.conf)), create=True)
        try:
            with d.transaction():
                for dom in sorted({u.domain for u in users}):
                    d.add_domain(Domain(name=dom))
                for u in users:
                    d.add_mailbox(Mailbox(name=u.mailbox, format="maildir"))
                    d.add_login(Login(u.local, u.domain, u.password_hash, u.mailbox))
                    d.add_address_rule(AddressRule(pattern=u.address, target=u.mailbox))
        finally:
            d.close()

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daisymail", "--config", str(self.conf), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_port(self.smtp_port, self.proc)
        wait_port(self.pop3_port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def roots(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid]


class Postfix:
    """A Postfix instance with its own config_directory; queue_directory set per phase."""

    name = "postfix"

    def __init__(self, work: Path = WORK) -> None:
        self.conf = work / "peers" / "postfix"
        self.mail_link = work / "peer-mail"
        self.smtp_port = POSTFIX_SMTP_PORT

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["postfix", "-c", str(self.conf), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=check,
        )

    def queue_dir(self) -> Path:
        out = subprocess.run(
            ["postconf", "-c", str(self.conf), "-h", "queue_directory"],
            capture_output=True,
            text=True,
            check=True,
        )
        return Path(out.stdout.strip())

    def use_queue(self, queue: Path) -> None:
        """A fresh queue_directory (on the filesystem under test); takes effect at start."""
        if queue.exists():
            shutil.rmtree(queue)
        queue.mkdir(parents=True)
        subprocess.run(
            ["postconf", "-c", str(self.conf), "-e", f"queue_directory={queue}"], check=True
        )

    def running(self) -> bool:
        return self._postfix("status", check=False).returncode == 0

    def start(self) -> None:
        if not self.running():
            self._postfix("start")
        wait_port(self.smtp_port)

    def stop(self) -> None:
        if self.running():
            pid = self.roots()[0]
            self._postfix("stop")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def roots(self) -> list[int]:
        return [int((self.queue_dir() / "pid" / "master.pid").read_text().split()[0])]


class Dovecot:
    """A Dovecot instance with its own dovecot.conf and base_dir."""

    name = "dovecot"

    def __init__(self, work: Path = WORK) -> None:
        self.dir = work / "peers" / "dovecot"
        self.conf = self.dir / "dovecot.conf"
        self.pop3_port = DOVECOT_POP3_PORT

    def _pidfile(self) -> Path:
        return self.dir / "run" / "master.pid"

    def running(self) -> bool:
        try:
            os.kill(self.roots()[0], 0)
        except (OSError, ValueError):
            return False
        return True

    def start(self) -> None:
        if not self.running():
            # The daemon keeps the descriptors it was given: no pipes, or run() never returns.
            subprocess.run(
                ["dovecot", "-c", str(self.conf)],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        wait_port(self.pop3_port)

    def stop(self) -> None:
        if self.running():
            subprocess.run(
                ["doveadm", "-c", str(self.conf), "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 30
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.1)

    def roots(self) -> list[int]:
        return [int(self._pidfile().read_text().split()[0])]
