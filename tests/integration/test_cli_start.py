"""The real `daisymail` entry point, and what an admin command costs to start.

Most tests run the CLI inside the test process (tests/conftest.py `run_cli`); these run
the installed command and `python -m daisymail` as separate processes, and check that
both ways give the same exit codes, output and errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daisymail.cli.common import State
from tests.conftest import Daisy, run_cli

# What only the server needs: an admin command that imports these pays for them each call.
SERVER_ONLY = (
    "daisymail.app",
    "daisymail.process",
    "daisymail.smtp.server",
    "daisymail.pop3.server",
    "daisymail.queue.runner",
    "daisymail.queue.remote",
    "daisymail.tls",
    "aiosmtplib",
    "uvloop",
    "dns.resolver",
    "cryptography.x509",
)


def _imported_by(config: Path, *args: str) -> set[str]:
    """The modules a fresh interpreter holds after running `daisymail ARGS`."""
    code = (
        "import sys\n"
        "from daisymail.cli.main import main\n"
        "sys.argv = ['daisymail', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "sys.__stdout__.write('\\n' + '\\n'.join(sorted(sys.modules)))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return set(res.stdout.split("\n"))


@pytest.mark.parametrize(
    "args",
    [
        ("domain", "list"),
        ("user", "list", "--json"),
        ("alias", "list"),
        ("relay", "list"),
        ("resolve", "nobody@example.test"),
        ("queue", "list"),
    ],
)
def test_admin_commands_do_not_import_the_servers(daisy_dir: Daisy, args: tuple[str, ...]) -> None:
    daisy_dir.cli("domain", "add", "example.test")
    loaded = _imported_by(daisy_dir.config, *args)
    assert "daisymail.cli.main" in loaded and "daisymail.config" in loaded  # the probe ran
    assert sorted(loaded.intersection(SERVER_ONLY)) == []


def test_listing_does_not_load_password_hashing(daisy_dir: Daisy) -> None:
    loaded = _imported_by(daisy_dir.config, "domain", "list")
    assert not {"argon2", "passlib", "daisymail.directory.passwords"} & loaded


def _installed_command() -> str:
    script = Path(sys.executable).parent / "daisymail"
    assert script.exists(), f"no {script}: is the package installed in this environment?"
    return str(script)


def test_installed_command_and_module_run_a_command(daisy_dir: Daisy) -> None:
    daisy_dir.cli_subprocess("domain", "add", "Acme.COM")
    for argv in (
        [_installed_command()],
        [sys.executable, "-m", "daisymail"],
    ):
        res = subprocess.run(
            [*argv, "--config", str(daisy_dir.config), "domain", "list", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert [d["name"] for d in json.loads(res.stdout)] == ["acme.com"]
        assert res.stderr == ""


def test_version_and_unknown_command_from_the_real_process() -> None:
    res = subprocess.run(
        [_installed_command(), "--version"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and res.stdout.startswith("daisymail, version ")
    res = subprocess.run(
        [_installed_command(), "no-such-command"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2
    assert "No such command 'no-such-command'" in res.stderr
    assert "Traceback" not in res.stderr


# Each: arguments, standard input. Successes, failures (exit 1) and usage errors (exit 2).
PARITY = [
    (("domain", "add", "example.test"), None),
    (("domain", "add", "example.test"), None),
    (("user", "add", "a@example.test", "--password-stdin"), "pw\n"),
    (("user", "add", "b@example.test"), ""),
    (("resolve", "a@example.test", "--json"), None),
    (("domain", "list", "--bogus-option"), None),
    (("frobnicate",), None),
    (("--help",), None),
]


def test_in_process_cli_matches_the_real_process(tmp_path: Path) -> None:
    """The same commands on two identical data dirs give the same codes and output."""
    a, b = Daisy(tmp_path / "a"), Daisy(tmp_path / "b")
    a.init()
    b.init()
    for args, stdin in PARITY:
        mine = a.cli(*args, input=stdin, check=False)
        real = b.cli_subprocess(*args, input=stdin, check=False)
        assert mine.returncode == real.returncode, (args, mine.stderr, real.stderr)
        assert mine.stdout.replace(str(a.root), "ROOT") == real.stdout.replace(
            str(b.root), "ROOT"
        ), args
        assert mine.stderr.replace(str(a.root), "ROOT") == real.stderr.replace(
            str(b.root), "ROOT"
        ), args


def test_a_broken_database_fails_alike(daisy_dir: Daisy) -> None:
    db = daisy_dir.root / "daisymail.db"
    db.unlink()
    db.mkdir()  # the database path is now a folder: opening it fails
    mine = daisy_dir.cli("domain", "list", check=False)
    real = daisy_dir.cli_subprocess("domain", "list", check=False)
    assert mine.returncode == real.returncode != 0
    assert mine.stderr == real.stderr


_BREAK = (
    "import daisymail.cli.common as c\n"
    "def boom(self):\n"
    "    raise RuntimeError('boom in the directory')\n"
    "c.State.directory = property(boom)\n"
)


def test_unexpected_exception_shows_as_a_traceback_and_exit_1(
    daisy_dir: Daisy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process runs keep what a crash looks like, so "no traceback" tests stay meaningful."""
    args = ["--config", str(daisy_dir.config), "domain", "list"]
    real = subprocess.run(
        [sys.executable, "-c", _BREAK + "from daisymail.cli.main import main\nmain()", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )

    def boom(self: State) -> None:
        raise RuntimeError("boom in the directory")

    monkeypatch.setattr(State, "directory", property(boom))
    mine = run_cli(args)
    assert real.returncode == mine.returncode == 1
    for res in (real, mine):
        assert "Traceback" in res.stderr
        assert res.stderr.splitlines()[-1] == "RuntimeError: boom in the directory"


def test_in_process_cli_leaves_logging_as_it_was(daisy_dir: Daisy) -> None:
    import logging

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    run_cli(["--config", str(daisy_dir.config), "domain", "list"])
    run_cli(["--config", str(daisy_dir.config), "no-such-command"])
    assert (list(root.handlers), root.level) == before
