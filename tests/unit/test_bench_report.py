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


def test_mailauth_table_and_cost() -> None:
    rows = [
        {"figure": "inbound", "checks": False, "msg_per_s": 500.0, "cpu_ms_per_msg": 2.0,
         "runs": [480.0, 500.0, 520.0]},
        {"figure": "inbound", "checks": True, "msg_per_s": 450.0, "cpu_ms_per_msg": 2.5,
         "runs": [440.0, 450.0, 460.0]},
        {"figure": "outbound", "dkim": False, "msg_per_s": 200.0, "cpu_ms_per_msg": 7.0,
         "runs": [200.0]},
        {"figure": "outbound", "dkim": True, "msg_per_s": 160.0, "cpu_ms_per_msg": 8.0,
         "runs": [160.0]},
        {"figure": "inbound", "checks": False, "msg_per_s": 600.0, "fs": "ext4", "senders": 10},
        {"figure": "inbound", "checks": True, "msg_per_s": 570.0, "fs": "ext4", "senders": 10},
        {"figure": "inbound", "checks": False, "msg_per_s": 800.0, "fs": "ext4", "senders": 50},
        {"figure": "inbound", "checks": True, "msg_per_s": 780.0, "fs": "ext4", "senders": 50},
    ]  # fmt: skip
    res = {"mailauth": rows}
    # Rows without a filesystem or a sender count: the data folder, 10 senders.
    assert report.mailauth_cost(res, "inbound", "data", 10) == pytest.approx(0.10)
    assert report.mailauth_cost(res, "outbound", "data", 10) == pytest.approx(0.20)
    assert report.mailauth_cost(res, "inbound", "ext4", 10) == pytest.approx(0.05)
    # By default, at the most senders measured: where the server is busiest.
    assert report.mailauth_cost(res, "inbound", "ext4") == pytest.approx(0.025)
    assert report.mailauth_cost(res, "inbound", "data") is None
    lines = report.mailauth_table(res)
    assert lines[4] == (
        "| port 25 in, SPF + DKIM + DMARC + ARC checks | data folder's filesystem | 10 | 500.0 "
        "| 450.0 | 10.0 % | 2.00 / 2.50 | 480.0, 500.0, 520.0 / 440.0, 450.0, 460.0 |"
    )
    assert lines[5].startswith(
        "| port 25 in, SPF + DKIM + DMARC + ARC checks | journaled ext4 image | 10 | 600.0 "
        "| 570.0 | 5.0 % |"
    )
    assert lines[6].startswith(
        "| port 25 in, SPF + DKIM + DMARC + ARC checks | journaled ext4 image | 50 | 800.0 "
        "| 780.0 | 2.5 % |"
    )
    assert lines[7].startswith(
        "| relayed out, DKIM-signed (RSA-2048 + Ed25519) | data folder's filesystem | 10 | 200.0 |"
    )
    assert len(lines) == 9  # no outbound row for ext4: it has no figures there
    empty: dict[str, list[object]] = {"smtp": [], "pop3": [], "logins": [], "memory": []}
    targets = "\n".join(report.targets({**res, **empty}))
    assert "checks, journaled ext4 image, 50 senders: cost < 15 % | 2.5 % | yes |" in targets
    assert report.mailauth_table({}) == []
