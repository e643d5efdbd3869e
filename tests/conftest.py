"""Fixtures that start the real server on real sockets, and run the real CLI."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI") == "true"
SERVICES = ("smtp", "submission", "submissions", "pop3", "pop3s")


def require_tool(name: str) -> str:
    """The path of an external client; a missing one skips locally and fails in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (scripts/test-deps installs it)")
        pytest.skip(f"{name} is not installed")
    return path


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody else in this run was given, outside the ephemeral range.

    Binding port 0 lets the kernel hand the same port out twice in a row, and a port from
    the ephemeral range can be taken by any client's outgoing connection before the server
    binds it; both made server starts fail now and then.
    """
    base = 20000 + (os.getpid() * 7919) % 10000
    for i in range(10000):
        port = 20000 + (base - 20000 + i) % 10000
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port in 20000-29999")


class Daisy:
    """A data dir made by `daisymail init`, and optionally a running server on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "daisymail.toml"
        self.ports = {name: free_port() for name in SERVICES}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "server.log"

    def cli(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "daisymail", "--config", str(self.config), *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def init(self, extra_config: str = "") -> None:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "daisymail",
                "init",
                "--data",
                str(self.root),
                "--dev",
                "--hostname",
                "mail.daisy.test",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        text = self.config.read_text()
        for name, port in self.ports.items():
            text = re.sub(rf"^{name} = \[.*?\]", f'{name} = ["127.0.0.1:{port}"]', text, flags=re.M)
        # The HTTP side adds imports to every start: on only where a test turns it on
        # (tests/integration/http_helpers.py).
        text = text.replace('listen = ["127.0.0.1:2080"]', "listen = []")
        # Tests must not wait seconds for each deliberate failure.
        text = text.replace("auth_failure_delay = 2.0", "auth_failure_delay = 0.2")
        self.config.write_text(text + extra_config)

    def set_config(self, section_line: str, key: str, value: str) -> None:
        """Replace `key = ...` in the given [section] of the config."""
        lines = self.config.read_text().splitlines()
        out, inside = [], False
        for line in lines:
            if line.startswith("["):
                inside = line.split("#")[0].strip() == section_line
            if inside and re.match(rf"^{re.escape(key)}\s*=", line):
                line = f"{key} = {value}"
            out.append(line)
        self.config.write_text("\n".join(out) + "\n")

    def start(self) -> None:
        env = dict(os.environ)
        logf = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daisymail", "--config", str(self.config), "serve"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 20
        for port in self.ports.values():
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {self.log.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"port {port} never opened: {self.log.read_text()}"
                        ) from None
                    time.sleep(0.05)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def add_user(self, address: str, password: str, *extra: str) -> None:
        self.cli("user", "add", address, "--password-stdin", *extra, input=password + "\n")


@pytest.fixture
def daisy_dir(tmp_path: Path) -> Iterator[Daisy]:
    d = Daisy(tmp_path / "daisy")
    d.init()
    yield d
    d.stop()


@pytest.fixture
def daisy(daisy_dir: Daisy) -> Daisy:
    """A running server with domain example.test and user demo@example.test / demo-pw."""
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("demo@example.test", "demo-pw")
    daisy_dir.start()
    return daisy_dir
