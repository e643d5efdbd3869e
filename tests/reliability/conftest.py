"""Shared pieces of the reliability suite: run length, figures, and message tagging.

Every test has a short version (run by `make test`) and a long one (run by `make
stress`, which sets DAISY_STRESS=1). Figures each test measured are appended as JSON
lines to the file named by DAISY_REPORT, from which docs/security.md is filled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

STRESS = os.environ.get("DAISY_STRESS") == "1"


def scale(short: int, stress: int) -> int:
    return stress if STRESS else short


def report(test: str, **figures: object) -> None:
    """Record what a run measured (kills, messages, inputs...) for the security page."""
    path = os.environ.get("DAISY_REPORT")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, "stress": STRESS, **figures}) + "\n")


def wait_for(pred: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)


def tagged_message(size: int) -> tuple[str, bytes]:
    """A message whose header carries a unique tag and the checksum of its body.

    The body is hex lines only (no dots, no `From ` lines), so any store's framing can
    be undone by dropping line ends before checking the sum.
    """
    tag = secrets.token_hex(8)
    body = secrets.token_hex(max(1, size // 2))
    lines = [body[i : i + 76] for i in range(0, len(body), 76)]
    digest = hashlib.sha256(body.encode()).hexdigest()
    head = f"Subject: t {tag}\r\nX-Tag: {tag}\r\nX-Sum: {digest}\r\n\r\n"
    return tag, (head + "\r\n".join(lines) + "\r\n").encode()


_TAG = re.compile(rb"^X-Tag: ([0-9a-f]+)\r?$", re.M)
_SUM = re.compile(rb"^X-Sum: ([0-9a-f]{64})\r?$", re.M)


def check_tagged(raw: bytes) -> tuple[str, bool]:
    """(tag, intact) of a stored message: intact when its body matches its checksum."""
    tag = _TAG.search(raw)
    digest = _SUM.search(raw)
    if tag is None or digest is None:
        return "", False
    _, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    clean = b"".join(body.split())
    return tag.group(1).decode(), bool(sep) and hashlib.sha256(clean).hexdigest().encode() == (
        digest.group(1)
    )


def maildir_files(box: Path) -> list[Path]:
    return [p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()]


def mbox_messages(path: Path) -> list[bytes]:
    """The messages of an mbox whose bodies never hold a line starting with `From `."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if not data:
        return []
    assert data.startswith(b"From "), data[:80]
    return re.split(rb"(?:^|\n)From [^\n]*\n", data)[1:]
