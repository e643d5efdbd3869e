"""/healthz (the process answers) and /readyz (it can do its work), with JSON detail.

Readiness checks what a probe cannot see from outside: the directory answers, the mail,
spool and queue folders are writable, and every mail listener is accepting.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from daisymail.config import Config
from daisymail.directory.base import Directory


@dataclass
class HealthSources:
    config: Callable[[], Config]
    directory: Directory
    listeners_up: Callable[[], Mapping[str, bool]]


def _writable(path: str) -> dict[str, object]:
    if not os.path.isdir(path):
        return {"ok": False, "path": path, "error": "missing"}
    if not os.access(path, os.W_OK | os.X_OK):
        return {"ok": False, "path": path, "error": "not writable"}
    return {"ok": True, "path": path}


def _directory(directory: Directory) -> dict[str, object]:
    try:
        directory.ping()
    except Exception as e:  # any driver error: the check reports it, the probe says 503
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return {"ok": False, "error": first[:200]}
    return {"ok": True}


async def readiness(src: HealthSources) -> tuple[bool, dict[str, object]]:
    """(ready, detail): every check with ok and, when failing, why."""
    cfg = src.config()
    checks: dict[str, dict[str, object]] = {
        "directory": await asyncio.to_thread(_directory, src.directory),
        "mail_dir": _writable(str(cfg.path(cfg.storage.mail_dir))),
        "spool_dir": _writable(str(cfg.path(cfg.storage.spool_dir))),
        "queue_dir": _writable(str(cfg.path(cfg.queue.dir))),
    }
    up = dict(src.listeners_up())
    checks["listeners"] = {"ok": bool(up) and all(up.values()), "services": up}
    ready = all(bool(c["ok"]) for c in checks.values())
    return ready, {"status": "ready" if ready else "not ready", "checks": checks}
