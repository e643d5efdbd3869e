"""One-line structured logs: ``event key=value ...``, with the session id as a field.

Values with spaces or quotes are quoted so that a line can be split reliably by tools.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from collections.abc import Callable

_NEEDS_QUOTES = re.compile(r'[\s"=\\]')

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


class LineFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER MESSAGE``: logging's own format, built with less work per line.

    A busy server logs several lines per session; the stock formatter formats the time
    (localtime + strftime) and interpolates a %-template for every one. The time text
    is kept for the second it names, and the line is joined directly."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
            self._second = second
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        message = record.getMessage()
        return f"{self.formatTime(record)} {record.levelname} {record.name} {message}"


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    # Event lines never show the caller's file and line: skip the stack walk that finds
    # them (the logging docs' own advice for hot paths), and the process/thread lookups.
    logging._srcfile = None
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))


def new_session_id() -> str:
    return secrets.token_hex(6)


def _fmt(value: object) -> str:
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\r", "\\r")
        return f'"{escaped}"'
    return text


EventHook = Callable[[str, dict[str, object]], None]
_hooks: list[EventHook] = []


def add_hook(hook: EventHook) -> None:
    """Also hand every event to hook (metrics count the events the logs already name)."""
    if hook not in _hooks:
        _hooks.append(hook)


def remove_hook(hook: EventHook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log one event line; fields with a None value are left out."""
    for hook in _hooks:
        hook(name, fields)
    if not logger.isEnabledFor(level):
        return
    parts = [name, *(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)]
    logger.log(level, " ".join(parts))
