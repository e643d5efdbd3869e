"""Fixtures that start the real server on real sockets, and run the real CLI.

The CLI runs in this process by default (click's runner, through the same entry point
and error handling as the installed command): an interpreter start per admin command
was most of the suite's time. `Daisy.cli_subprocess` runs the real `python -m daisymail`,
and DAISY_CLI_SUBPROCESS=1 makes every `Daisy.cli` call do so.
"""

from __future__ import annotations

import atexit
import compileall
import importlib.util
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.smtp_sink import Sink

IN_CI = os.environ.get("CI") == "true"
SERVICES = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps")
CLI_SUBPROCESS = os.environ.get("DAISY_CLI_SUBPROCESS") == "1"
# Commands that run until stopped, or change the process they run in: never in-process.
_OUT_OF_PROCESS = frozenset({"serve"})


def require_tool(name: str) -> str:
    """The path of an external client; a missing one skips locally and fails in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (scripts/test-deps installs it)")
        pytest.skip(f"{name} is not installed")
    return path


_handed_out: set[int] = set()


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


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


def _command_of(args: Sequence[str]) -> str | None:
    """The subcommand name in a `daisymail` argument list (skipping global options)."""
    it = iter(args)
    for a in it:
        if a == "--config":
            next(it, None)
        elif not a.startswith("-"):
            return a
    return None


def run_cli(
    args: Sequence[str], input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`daisymail ARGS` as the installed command would run it, inside this process.

    Same exit codes, stdout and stderr as a separate interpreter: click's standalone
    handling (usage errors, sys.exit), and a traceback on stderr with exit code 1 for
    an unexpected exception, so tests that look for tracebacks still see them. Warnings
    logged by the command reach stderr as with Python's last-resort handler, and the
    logging setup is restored afterwards.
    """
    cmd = [sys.executable, "-m", "daisymail", *args]
    if CLI_SUBPROCESS or _command_of(args) in _OUT_OF_PROCESS:
        return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    from click.testing import CliRunner

    from daisymail.cli.main import cli

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.root.manager.disable)
    cwd, env, ids = os.getcwd(), dict(os.environ), (os.geteuid(), os.getegid())
    umask = os.umask(0o022)
    os.umask(umask)
    stderr_log = io.StringIO()
    handler = logging.StreamHandler(stderr_log)
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)
    try:
        result = CliRunner().invoke(
            cli, list(args), input=input, prog_name="daisymail", terminal_width=_help_width()
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.disable(saved[2])
        os.chdir(cwd)
        os.umask(umask)
        if dict(os.environ) != env:
            os.environ.clear()
            os.environ.update(env)
    if (os.geteuid(), os.getegid()) != ids:
        pytest.exit(
            f"`daisymail {' '.join(args)}` changed the test process's user: "
            "add the command to _OUT_OF_PROCESS in tests/conftest.py",
            3,
        )
    code, stderr = result.exit_code, stderr_log.getvalue() + result.stderr
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        stderr += "".join(traceback.format_exception(exc))
        code = 1
    return subprocess.CompletedProcess(cmd, code, result.stdout, stderr)


def _help_width() -> int:
    """The width click formats help to in a process whose output is a pipe."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    return max(min(columns or 80, 80) - 2, 50)


_template: Path | None = None


def _initialised_template() -> Path:
    """One `daisymail init --dev` data dir per test process, copied for each test.

    Init makes a key pair and a certificate and creates the database: doing it once
    instead of per test saves most of a test's setup. The copy is byte for byte, and
    every path in the config is relative to the data dir.
    """
    global _template
    if _template is None:
        base = Path(tempfile.mkdtemp(prefix="daisy-template-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        root = base / "daisy"
        res = run_cli(["init", "--data", str(root), "--dev", "--hostname", "mail.daisy.test"])
        assert res.returncode == 0, res.stderr
        _template = root
    return _template


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
        """`daisymail --config CONFIG ARGS`, in this process (see run_cli)."""
        res = run_cli(["--config", str(self.config), *args], input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def cli_subprocess(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The same, through a real `python -m daisymail` process."""
        cmd = [sys.executable, "-m", "daisymail", "--config", str(self.config), *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr}")
        return res

    def init(self, extra_config: str = "") -> None:
        """What `daisymail init --data ROOT --dev` makes (a copy of one made per process)."""
        if CLI_SUBPROCESS or self.config.exists():
            res = run_cli(
                ["init", "--data", str(self.root), "--dev", "--hostname", "mail.daisy.test"]
            )
            assert res.returncode == 0, res.stderr
        else:
            shutil.copytree(_initialised_template(), self.root, dirs_exist_ok=True)
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

    def use_dns(self, address: str, timeout: float = 2.0) -> None:
        """Resolve through a test DNS server (tests/dns_server.py) at HOST:PORT."""
        self.set_config("[dns]", "nameservers", f'["{address}"]')
        self.set_config("[dns]", "timeout", str(timeout))

    def check_inbound(self) -> None:
        """SPF/DKIM/DMARC checks on, with 127.0.0.1 outside the relay networks (so the
        tests' own mail is judged as mail from the Internet)."""
        self.set_config("[verify]", "enabled", "true")
        self.set_config("[relay]", "networks", '["127.0.0.5/32"]')

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


_stopping: list[subprocess.Popen[bytes]] = []


def _stop_in_background(d: Daisy) -> None:
    """SIGTERM the test's server and go on; pytest_sessionfinish waits for it.

    A server's graceful stop (sessions in flight get a grace period) costs the next test
    nothing this way; each test has its own ports and data dir.
    """
    if d.proc is not None and d.proc.poll() is None:
        d.proc.terminate()
        _stopping.append(d.proc)
    d.proc = None
    _stopping[:] = [p for p in _stopping if p.poll() is None]


def pytest_sessionfinish(session: pytest.Session) -> None:
    for proc in _stopping:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _stopping.clear()


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile the package once, for every server and CLI process the tests start.

    With PYTHONDONTWRITEBYTECODE set (as on the CI machine) an editable install never gets
    .pyc files, and each `daisymail serve` compiled all of Daisy's modules again.
    """
    if hasattr(config, "workerinput"):  # an xdist worker: the controller did it
        return
    spec = importlib.util.find_spec("daisymail")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(folder, quiet=2)


@pytest.fixture
def sink() -> Iterator[Sink]:
    """An SMTP server on loopback for the queue to deliver to (integration/smtp_sink.py)."""
    from tests.integration.smtp_sink import Sink

    s = Sink()
    yield s
    s.stop()


@pytest.fixture
def daisy_dir(tmp_path: Path) -> Iterator[Daisy]:
    d = Daisy(tmp_path / "daisy")
    d.init()
    yield d
    _stop_in_background(d)


_seeded: Path | None = None


def _seeded_template() -> Path:
    """The template after `domain add example.test` and `user add demo@example.test`.

    Made once per test process with the CLI; the argon2 hash of the password alone costs
    a good part of a second on a busy machine.
    """
    global _seeded
    if _seeded is None:
        d = Daisy(_initialised_template().parent / "seeded")
        d.init()
        d.cli("domain", "add", "example.test")
        d.add_user("demo@example.test", "demo-pw")
        _seeded = d.root
    return _seeded


@pytest.fixture
def daisy(daisy_dir: Daisy) -> Daisy:
    """A running server with domain example.test and user demo@example.test / demo-pw."""
    if CLI_SUBPROCESS:
        daisy_dir.cli("domain", "add", "example.test")
        daisy_dir.add_user("demo@example.test", "demo-pw")
    else:
        # Same directory state as the two commands above: copy all but the config.
        shutil.copytree(
            _seeded_template(),
            daisy_dir.root,
            dirs_exist_ok=True,
            ignore=lambda _dir, names: [n for n in names if n in ("daisymail.toml", "server.log")],
        )
    daisy_dir.start()
    return daisy_dir
