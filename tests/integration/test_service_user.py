"""Daisy as the legacy box really runs: started as root, serving as a service user in
group mail, over spool files that belong to their users (660, group mail).

The steps are those of docs/migration.md. Needs root (system users, chown): skipped
locally without it, a failure in CI. The service user cannot read a Python installed
under /root, so the server runs on a world-readable copy of the interpreter's library,
the virtualenv's packages and Daisy (hard links where possible); one test leaves Daisy's
code unreadable on purpose and checks Daisy's own refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import poplib
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import daisymail
from tests.conftest import IN_CI, Daisy, alive, free_port, require_tool
from tests.dns_server import serve as serve_dns
from tests.integration.smtp_sink import Sink
from tests.integration.test_queue_delivery import configure

SERVICE = "daisyt-svc"
OWNER = "daisyt-bob"
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
# Not needed to serve mail; left out of the copy to keep it small.
_SKIP_STDLIB = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
_SKIP_SITE = ("mypy", "mypyc", "hypothesis", "_pytest", "pytest", "pip", "setuptools", "ruff")


def _require_root() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the service-user tests must run as root in CI")
        pytest.skip("needs root (system users, chown)")
    for tool in ("useradd", "userdel", "usermod"):
        require_tool(tool)


def _ensure_user(name: str, *groups: str) -> bool:
    """Create a system user (True) or reuse one left by an earlier run (False)."""
    try:
        pwd.getpwnam(name)
        created = False
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True,
        )  # fmt: skip
        created = True
    if groups:
        subprocess.run(["usermod", "-a", "-G", ",".join(groups), name], check=True)
    return created


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _skip_site(folder: str, names: list[str]) -> list[str]:
    if folder != sysconfig.get_paths()["purelib"]:
        return ["__pycache__"] if "__pycache__" in names else []
    return [
        n
        for n in names
        if n.startswith(_SKIP_SITE) or "__mypyc" in n or n.startswith("__editable__")
    ]


@dataclass
class Runtime:
    """A Python library, packages and Daisy that every user can read."""

    base: Path
    home: Path
    src: Path

    def env(self, src: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(
            PYTHONHOME=str(self.home),
            PYTHONPATH=str(src or self.src),
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env


@contextlib.contextmanager
def _system_users() -> Iterator[None]:
    """The test users, shared by every test process that runs this module's tests (the
    parallel run may split them between processes): the last process using them removes
    the users made for the run, never while another still uses them. The lock file
    names the processes using them (a crashed one is dropped) and the users made."""
    lock = Path(tempfile.gettempdir()) / "daisyt-users.lock"

    def update(change: Callable[[set[int], set[str]], None]) -> None:
        with open(lock, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            pids_text, _, made_text = f.read().partition("\n")
            pids = {int(p) for p in pids_text.split() if alive(int(p))}
            made = set(made_text.split())
            change(pids, made)
            f.seek(0)
            f.truncate()
            f.write(" ".join(map(str, sorted(pids))) + "\n" + " ".join(sorted(made)))

    def enter(pids: set[int], made: set[str]) -> None:
        for user, groups in ((SERVICE, ("mail",)), (OWNER, ())):
            if _ensure_user(user, *groups):
                made.add(user)
        pids.add(os.getpid())

    def leave(pids: set[int], made: set[str]) -> None:
        pids.discard(os.getpid())
        if not pids:
            for user in sorted(made):
                subprocess.run(["userdel", user], capture_output=True)
            made.clear()

    update(enter)
    try:
        yield
    finally:
        update(leave)


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    _require_root()
    with _system_users():
        yield from _runtime()


def _runtime() -> Iterator[Runtime]:
    base = Path(tempfile.mkdtemp(prefix="daisy-service-user-", dir="/tmp"))
    try:
        base.chmod(0o755)
        lib = base / "python" / "lib" / PY
        shutil.copytree(
            sysconfig.get_paths()["stdlib"],
            lib,
            ignore=lambda d, names: [n for n in names if n in _SKIP_STDLIB],
            copy_function=_link_or_copy,
            symlinks=True,
        )
        shutil.copytree(
            sysconfig.get_paths()["purelib"],
            lib / "site-packages",
            ignore=_skip_site,
            copy_function=_link_or_copy,
        )
        shutil.copytree(
            Path(daisymail.__file__).parent,
            base / "src" / "daisymail",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        for folder in (base / "python", base / "src"):
            subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
        yield Runtime(base, base / "python", base / "src")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _serve(runtime: Runtime, daisy: Daisy, src: Path | None = None) -> subprocess.Popen[bytes]:
    exe = getattr(sys, "_base_executable", sys.executable)
    with open(daisy.log, "ab") as logf:
        return subprocess.Popen(
            [exe, "-m", "daisymail", "--config", str(daisy.config), "serve"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=runtime.env(src),
            cwd="/",
        )


def _wait_for_ports(daisy: Daisy, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    for port in daisy.ports.values():
        while True:
            assert proc.poll() is None, f"server exited: {daisy.logs()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"port {port} never opened: {daisy.logs()}"
                time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective uid
    raise AssertionError("no Uid line")


OLD = b"From old@example.net  Mon Jan  5 10:00:00 2004\nSubject: from teapop days\n\nold\n\n"


def _legacy_box(runtime: Runtime) -> tuple[Daisy, Path]:
    """A data dir for the service user and a spool as on the legacy box (SPEC §3)."""
    root = runtime.base / "data"
    daisy = Daisy(root)
    daisy.init()
    text = daisy.config.read_text().replace('user = ""', f'user = "{SERVICE}"', 1)
    daisy.config.write_text(text)
    spool = runtime.base / "spool"
    spool.mkdir()
    mail = grp.getgrnam("mail").gr_gid
    os.chown(spool, 0, mail)
    spool.chmod(0o2775)
    box = spool / OWNER
    box.write_bytes(OLD)
    os.chown(box, pwd.getpwnam(OWNER).pw_uid, mail)
    box.chmod(0o660)
    daisy.cli("domain", "add", "example.test")
    daisy.cli("mailbox", "add", "bob", "--format", "mbox", "--path", str(box))
    daisy.add_user("bob@example.test", "bob-pw", "--mailbox", "bob")
    shutil.rmtree(root / "queue")  # a missing folder is made for the service user
    subprocess.run(["chown", "-R", f"{SERVICE}:", str(root)], check=True)
    return daisy, box


def test_serving_a_legacy_spool_as_a_service_user(runtime: Runtime) -> None:
    daisy, box = _legacy_box(runtime)
    svc = pwd.getpwnam(SERVICE)
    owner = pwd.getpwnam(OWNER).pw_uid
    mail = grp.getgrnam("mail").gr_gid
    # Port 25 checks on, judged by a verdict worker: started after the privileges drop.
    dns = serve_dns(free_port(), [("example.net", {"@": [("TXT", "v=spf1 -all")]})])
    daisy.use_dns(dns.address)
    daisy.check_inbound()
    daisy.set_config("[verify]", "workers", "1")
    proc = _serve(runtime, daisy)
    try:
        _wait_for_ports(daisy, proc)
        assert _uid_of(proc.pid) == svc.pw_uid
        assert "privileges.dropped" in daisy.logs()
        queue = daisy.root / "queue"
        assert queue.stat().st_uid == svc.pw_uid
        with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=20) as s:
            s.sendmail(
                "alice@example.net",
                ["bob@example.test"],
                b"Subject: new mail\r\n\r\ndelivered by the service user\r\n",
            )
        st = box.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (owner, mail, 0o660)
        pop = poplib.POP3("127.0.0.1", daisy.ports["pop3"], timeout=20)
        try:
            pop.user("bob@example.test")
            pop.pass_("bob-pw")
            assert pop.stat()[0] == 2
            _, lines, _ = pop.retr(1)
            assert b"Subject: from teapop days" in lines
            _, lines, _ = pop.retr(2)
            assert b"delivered by the service user" in lines
            pop.dele(1)
        finally:
            assert pop.quit().startswith(b"+OK")
        st = box.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (owner, mail, 0o660)
        data = box.read_bytes()
        assert data.startswith(b"From alice@example.net ")
        assert b"from teapop days" not in data
        assert b"delivered by the service user\n" in data
        assert sorted(p.name for p in box.parent.iterdir()) == [f".{OWNER}.daisymail-pop3", OWNER]

        deadline = time.monotonic() + 20
        while "mailauth.worker.ready" not in daisy.logs():
            assert time.monotonic() < deadline, daisy.logs()
            time.sleep(0.1)
        pid = int(daisy.logs().split("mailauth.worker.ready pid=")[1].split()[0])
        assert _uid_of(pid) == svc.pw_uid
        with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=20) as s:
            s.sendmail("alice@example.net", ["bob@example.test"], b"Subject: w\r\n\r\njudged\r\n")
        verdicts = [x for x in daisy.logs().splitlines() if " spf=" in x]
        assert "by=worker" in verdicts[-1]  # the first may have come before it was ready
        assert "spf=fail" in verdicts[-1]
        assert box.read_bytes().count(b"\tspf=fail") == 2
    finally:
        _stop(proc)
        dns.stop()
    assert "Traceback" not in daisy.logs(), daisy.logs()


def test_outgoing_mail_is_signed_by_a_worker_running_as_the_service_user(
    runtime: Runtime,
) -> None:
    """The DKIM keys are made by root (mode 600, given to the data folder's owner); the
    worker that signs has dropped to the service user and must still read them."""
    root = runtime.base / "signing"
    daisy = Daisy(root)
    daisy.init()
    daisy.config.write_text(daisy.config.read_text().replace('user = ""', f'user = "{SERVICE}"', 1))
    sink = Sink()
    configure(daisy, sink.port)
    daisy.set_config("[verify]", "workers", "1")
    subprocess.run(["chown", "-R", f"{SERVICE}:", str(root)], check=True)
    daisy.cli("dkim", "keygen", "example.test")
    keys = [p for p in (root / "dkim").rglob("*") if p.is_file() and p.suffix == ".pem"]
    assert keys and all(p.stat().st_mode & 0o777 == 0o600 for p in keys)
    proc = _serve(runtime, daisy)
    try:
        _wait_for_ports(daisy, proc)
        deadline = time.monotonic() + 20
        while "mailauth.worker.ready" not in daisy.logs():
            assert time.monotonic() < deadline, daisy.logs()
            time.sleep(0.1)
        pid = int(daisy.logs().split("mailauth.worker.ready pid=")[1].split()[0])
        assert _uid_of(pid) == pwd.getpwnam(SERVICE).pw_uid
        with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=20) as s:
            s.sendmail("demo@example.test", ["friend@remote.test"], b"Subject: s\r\n\r\nsigned\r\n")
        deadline = time.monotonic() + 20
        while not sink.messages:
            assert time.monotonic() < deadline, daisy.logs()
            time.sleep(0.05)
        assert sink.messages[0][2].count(b"DKIM-Signature:") == 2
        assert "queue.signed" in daisy.logs() and "by=worker" in daisy.logs(), daisy.logs()
    finally:
        _stop(proc)
        sink.stop()
    assert "Traceback" not in daisy.logs() and "key_unreadable" not in daisy.logs(), daisy.logs()


def test_refuses_a_service_user_that_cannot_read_daisy(runtime: Runtime) -> None:
    """Daisy's code where the service user cannot reach it: a clear refusal, no drop."""
    private = runtime.base / "private"
    with contextlib.suppress(FileExistsError):
        private.mkdir(mode=0o700)
    if not (private / "daisymail").exists():
        shutil.copytree(runtime.src / "daisymail", private / "daisymail")
    daisy = Daisy(runtime.base / "refused")
    daisy.init()
    text = daisy.config.read_text().replace('user = ""', f'user = "{SERVICE}"', 1)
    daisy.config.write_text(text)
    subprocess.run(["chown", "-R", f"{SERVICE}:", str(daisy.root)], check=True)
    proc = _serve(runtime, daisy, src=private)
    try:
        assert proc.wait(timeout=60) == 1
    finally:
        _stop(proc)
    log = daisy.logs()
    assert f"user {SERVICE} cannot read Daisy's code" in log, log
    assert str(private) in log
    assert "privileges.dropped" not in log


def test_refuses_a_data_folder_the_service_user_cannot_write(runtime: Runtime) -> None:
    daisy = Daisy(runtime.base / "rootowned")
    daisy.init()
    text = daisy.config.read_text().replace('user = ""', f'user = "{SERVICE}"', 1)
    daisy.config.write_text(text)
    proc = _serve(runtime, daisy)
    try:
        assert proc.wait(timeout=60) == 1
    finally:
        _stop(proc)
    log = daisy.logs()
    assert f"is not writable by user {SERVICE}" in log and f"chown -R {SERVICE}:" in log, log
