"""A few seconds of the benchmark against a real server, so bench/ cannot rot."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Daisy

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench(script: str, *args: object, timeout: int = 120, env: dict[str, str] | None = None) -> str:
    """Run one bench/ script to completion; its standard output (JSON, or a path)."""
    res = subprocess.run(
        [sys.executable, str(BENCH / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_smtp_load_generator_smoke(daisy: Daisy) -> None:
    out = bench(
        "smtp_load.py", "--port", daisy.ports["smtp"], "--rcpt", "demo@example.test",
        "--size", 4096, "--concurrency", 1, 4, "--messages", 20,
    )  # fmt: skip
    results = json.loads(out)
    assert [r["concurrency"] for r in results] == [1, 4]
    assert all(r["messages"] == 20 and r["msg_per_s"] > 0 for r in results)
    stored = list((daisy.root / "mail/demo.example.test/new").iterdir())
    assert len(stored) == 40


def _wait_until_accepted(daisy: Daisy, rcpt: str) -> None:
    """A user added while the server runs exists for it once its snapshot is refreshed
    (a fraction of a second); the load generator must not race that."""
    deadline = time.monotonic() + 10
    while True:
        with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
            s.ehlo()
            s.mail("probe@example.net")
            code, _ = s.rcpt(rcpt)
        if code == 250:
            return
        assert time.monotonic() < deadline, f"{rcpt} never became deliverable"
        time.sleep(0.1)


def test_smtp_load_generator_spreads_over_recipients(daisy: Daisy) -> None:
    daisy.add_user("other@example.test", "other-pw")
    _wait_until_accepted(daisy, "other@example.test")
    bench(
        "smtp_load.py", "--port", daisy.ports["smtp"], "--rcpt", "demo@example.test",
        "--rcpt", "other@example.test", "--spread", "--concurrency", 2, "--messages", 10,
    )  # fmt: skip
    for box in ("demo.example.test", "other.example.test"):
        assert len(list((daisy.root / "mail" / box / "new").iterdir())) == 5


def test_pop3_load_generator_smoke(daisy: Daisy) -> None:
    bench(
        "smtp_load.py", "--port", daisy.ports["smtp"], "--rcpt", "demo@example.test",
        "--size", 4096, "--concurrency", 1, "--messages", 10,
    )  # fmt: skip
    out = bench(
        "pop3_load.py", "--port", daisy.ports["pop3"], "--user", "demo@example.test:demo-pw",
        "--concurrency", 1, "--seconds", 1,
    )  # fmt: skip
    logins, retrieve = json.loads(out)
    assert logins["mode"] == "logins" and logins["sessions"] >= 1
    assert retrieve["mode"] == "retrieve" and retrieve["mb_per_s"] > 0


@pytest.mark.serial
def test_bench_run_quick_daisy_only(tmp_path: Path) -> None:
    """The whole harness (SMTP waits for stored files, POP3, idle memory) on Daisy alone."""
    out = tmp_path / "results"
    docs = BENCH.parent / "docs" / "performance.md"
    docs_before = docs.read_bytes() if docs.exists() else None
    env = dict(os.environ, DAISY_BENCH_DIR=str(tmp_path / "work"))
    path = bench(
        "run", "--quick", "--daisy-only", "--fs", "data", "--reps", 1, "--out", out,
        "--imap-idle", 20, timeout=600, env=env,
    )  # fmt: skip
    doc = json.loads(Path(path.strip()).read_text())
    smtp = doc["smtp"]
    assert {(r["size"], r["concurrency"]) for r in smtp} == {
        (s, c) for s in (4096, 102400) for c in (1, 10, 50, 200)
    }
    assert all(r["server"] == "daisy" and r["fs"] == "data" for r in smtp)
    assert all(r["accepted"] > 0 and r["delivered"] == r["accepted"] for r in smtp)
    assert all(r["msg_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 for r in smtp)
    assert all(r["cpu_s_per_1000"] > 0 for r in smtp)
    modes = {(r["mode"], r["concurrency"]) for r in doc["pop3"]}
    assert modes == {("logins", 1), ("logins", 20), ("retrieve", 1), ("retrieve", 20)}
    assert all(r["sessions"] > 0 for r in doc["pop3"])
    assert all(r["mb_per_s"] > 0 for r in doc["pop3"] if r["mode"] == "retrieve")
    logins = doc["logins"]  # the polling pattern, Daisy's login cache on and off
    assert {(r["variant"], r["concurrency"]) for r in logins} == {
        (v, c) for v in ("cache on", "cache off") for c in (1, 20)
    }
    assert all(r["server"] == "daisy" and r["sessions"] > 0 for r in logins)
    rate = {(r["variant"], r["concurrency"]): r["logins_per_s"] for r in logins}
    assert rate["cache on", 1] > rate["cache off", 1]  # ~100x here: a hit skips argon2
    (mem,) = doc["memory"]
    assert mem["smtp_accepted"] == mem["pop3_accepted"] == mem["idle_each"]
    assert mem["held"]["rss_mb"] > 0 and mem["held"]["processes"] == 1
    features = {(r["figure"], r.get("checks", r.get("dkim"))) for r in doc["mailauth"]}
    assert features == {
        ("inbound", False),
        ("inbound", True),
        ("outbound", False),
        ("outbound", True),
    }
    assert all(r["msg_per_s"] > 0 for r in doc["mailauth"])
    imap = {r["figure"]: r for r in doc["imap"]["rows"] if r["server"] == "daisy"}
    assert imap["open_folder"]["sessions"] > 0 and imap["open_folder"]["median_s"] > 0
    assert imap["fetch_bodies"]["mb_per_s"] > 0 and imap["fetch_bodies_lf"]["mb_per_s"] > 0
    assert imap["idle"]["held"] == 20 and imap["idle"]["failed"] == 0
    # The Maildirs of every run are gone; the docs are only rewritten by full comparisons.
    assert not (tmp_path / "work" / "fs" / "data" / "runs").exists()
    assert (docs.read_bytes() if docs.exists() else None) == docs_before
