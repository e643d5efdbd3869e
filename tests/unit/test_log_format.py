"""The log line formatter gives logging's own line, whatever the second or the record."""

from __future__ import annotations

import logging
import sys

import pytest

from daisymail.observability import LineFormatter

STOCK = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")


def _record(msg: str, created: float, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("daisymail.smtp", logging.INFO, "", 0, msg, args or None, exc_info)
    rec.created = created
    return rec


@pytest.mark.parametrize(
    ("msg", "created", "args", "exc"),
    [
        ("session.start sid=abc", 1_764_000_000.2, (), False),
        ("session.start sid=abc", 1_764_000_000.9, (), False),  # same second, cached text
        ("session.end sid=abc", 1_764_000_001.0, (), False),  # the next second
        ("queued %s for %d", 1_764_000_001.5, ("x", 3), False),
        ("startup.failed", 1_764_000_002.0, (), True),
    ],
)
def test_same_line_as_logging(msg: str, created: float, args: tuple, exc: bool) -> None:
    ours = LineFormatter()
    for earlier in (created - 1.0, created):  # a cached stamp from another second first
        ours.format(_record("warm", earlier))
    assert ours.format(_record(msg, created, *args, exc=exc)) == STOCK.format(
        _record(msg, created, *args, exc=exc)
    )
