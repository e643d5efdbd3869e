"""Unusable limits are refused by `check`, by `serve` and at SIGHUP (issue 11, defect 9).

Before, `[limits] max_line_length = 100` or `max_errors = 0` passed all three, then every
SMTP connection closed without a word."""

from __future__ import annotations

import signal
import smtplib
import time

import pytest

from tests.conftest import Daisy


@pytest.mark.parametrize(("key", "value"), [("max_line_length", "100"), ("max_errors", "0")])
def test_check_and_serve_refuse_naming_file_and_key(daisy_dir: Daisy, key: str, value: str) -> None:
    daisy_dir.set_config("[limits]", key, value)
    res = daisy_dir.cli("check", check=False)
    assert res.returncode != 0
    assert f"limits.{key}: expected an integer >=" in res.stderr, res.stderr
    assert str(daisy_dir.config) in res.stderr
    with pytest.raises(AssertionError, match=f"limits.{key}"):
        daisy_dir.start()  # the server exits at once, saying why
    assert daisy_dir.proc is not None and daisy_dir.proc.returncode != 0


def _wait_for(daisy: Daisy, text: str) -> None:
    deadline = time.monotonic() + 20
    while text not in daisy.logs():
        assert time.monotonic() < deadline, daisy.logs()
        time.sleep(0.05)


def test_sighup_with_bad_limits_keeps_serving_with_the_old_ones(daisy: Daisy) -> None:
    assert daisy.proc is not None
    daisy.set_config("[limits]", "max_errors", "0")
    daisy.set_config("[limits]", "max_message_size", "12345")
    daisy.proc.send_signal(signal.SIGHUP)
    _wait_for(daisy, "reload.failed")
    log = daisy.logs()
    assert "limits.max_errors" in log and "reloaded" not in log
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        assert s.ehlo("x")[0] == 250
        assert s.esmtp_features["size"] != "12345"  # nothing of the bad file applied
        s.sendmail("a@example.net", ["demo@example.test"], b"Subject: t\r\n\r\nstill here\r\n")
    # a good file afterwards is taken
    daisy.set_config("[limits]", "max_errors", "1")
    daisy.proc.send_signal(signal.SIGHUP)
    _wait_for(daisy, "reloaded")
    with smtplib.SMTP("127.0.0.1", daisy.ports["smtp"], timeout=10) as s:
        s.ehlo("x")
        assert s.esmtp_features["size"] == "12345"
