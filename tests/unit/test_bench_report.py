"""The benchmark report's SMTP spread: the lowest and highest per-repetition ratio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import report


def _rows(pairs: list[tuple[float | None, float | None]]) -> tuple[list[dict], list[dict]]:
    d = [{"rep": i, "msg_per_s": a} for i, (a, _) in enumerate(pairs)]
    p = [{"rep": i, "msg_per_s": b} for i, (_, b) in enumerate(pairs)]
    return d, p


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([(100, 50), (90, 60), (120, 40)], "1.50–3.00"),  # pairs by repetition, not by rank
        ([(100, 50)], "–"),  # one repetition has no spread
        ([(100, 50), (80, 0)], "–"),  # a failed peer run gives no ratio
        ([(100, 50), (None, 50), (60, 40)], "1.50–2.00"),
    ],
)
def test_spread(pairs: list[tuple[float | None, float | None]], expected: str) -> None:
    d, p = _rows(pairs)
    assert report._spread(d, p, "msg_per_s") == expected


def test_smtp_table_has_the_spread_column() -> None:
    rows = [
        {"fs": "data", "size": 4096, "concurrency": 1, "server": server, "rep": rep,
         "msg_per_s": rate, "p50_ms": 1, "p99_ms": 2, "cpu_s_per_1000": 1}
        for rep, (a, b) in enumerate([(100, 50), (90, 60)])
        for server, rate in (("daisy", a), ("postfix", b))
    ]  # fmt: skip
    lines = report.smtp_tables({"smtp": rows, "filesystems": {"data": "ext4"}})
    assert "| ratio range |" in lines[2]
    assert lines[4].startswith("| 4 KiB | 1 | 95.0 | 55.0 | **1.73** | 1.50–2.00 |")
