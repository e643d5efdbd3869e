"""Type=notify: systemd hears READY=1 once the listeners accept, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import smtplib
import socket
from pathlib import Path

import pytest

from tests.conftest import Daisy


def test_ready_and_stopping_reach_notify_socket(
    daisy_dir: Daisy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(20)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        daisy_dir.start()
        assert s.recv(100) == b"READY=1"
        # READY means mail is accepted now.
        with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as smtp:
            assert smtp.noop()[0] == 250
        assert daisy_dir.stop() == 0
        assert s.recv(100) == b"STOPPING=1"
