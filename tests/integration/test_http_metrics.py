"""/metrics, /healthz and /readyz on a running server: promtool and a real Prometheus."""

from __future__ import annotations

import json
import smtplib
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daisy, free_port, require_tool
from tests.integration.http_helpers import with_http


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = Daisy(tmp_path_factory.mktemp("http-metrics") / "daisy")
    d.init()
    with_http(d)
    d.cli("domain", "add", "example.test")
    d.add_user("demo@example.test", "demo-pw")
    d.start()
    # Traffic for the counters: one accepted message, one refused recipient, a bad login.
    with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=10) as s:
        s.sendmail("a@sender.test", ["demo@example.test"], b"Subject: hi\r\n\r\nbody\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("a@sender.test", ["nobody@example.test"], b"Subject: x\r\n\r\nx\r\n")
    yield d
    d.stop()


def get(d: Daisy, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{d.ports['http']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric_lines(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_count_what_happened(server: Daisy) -> None:
    status, text = get(server, "/metrics")
    assert status == 200
    m = metric_lines(text)
    assert m['daisymail_messages_total{listener="smtp",result="accepted",status="2.0"}'] == 1
    assert m['daisymail_messages_total{listener="smtp",result="rejected",status="5.1"}'] == 1
    assert m['daisymail_deliveries_total{result="local"}'] == 1
    assert m['daisymail_smtp_transaction_seconds_count{listener="smtp"}'] == 1
    assert m["daisymail_mailbox_delivery_seconds_count"] == 1
    assert m['daisymail_sessions_total{service="smtp",tls="no"}'] >= 1
    assert m["daisymail_queue_messages"] == 0
    expiry = [v for k, v in m.items() if k.startswith("daisymail_tls_certificate_expiry")]
    assert expiry and expiry[0] > time.time() + 30 * 86400


def test_logins_are_counted_by_service_and_result(server: Daisy) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.starttls()
        s.ehlo()
        s.user, s.password = "demo@example.test", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)  # one attempt (login() would try each mechanism)
        s.login("demo@example.test", "demo-pw")
    m = metric_lines(get(server, "/metrics")[1])
    assert m['daisymail_logins_total{result="failure",service="submission"}'] == 1
    assert m['daisymail_logins_total{result="success",service="submission"}'] == 1


def test_promtool_accepts_the_exposition(server: Daisy) -> None:
    promtool = require_tool("promtool")
    text = get(server, "/metrics")[1]
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_health_and_readiness(server: Daisy) -> None:
    status, body = get(server, "/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    status, body = get(server, "/readyz")
    detail = json.loads(body)
    assert status == 200, detail
    assert detail["checks"]["directory"]["ok"] is True
    assert detail["checks"]["listeners"]["services"]["smtp"] is True


def test_readiness_fails_when_the_queue_dir_is_not_writable(server: Daisy, tmp_path: Path) -> None:
    queue = server.root / "queue"
    moved = queue.with_name("queue.away")
    queue.rename(moved)
    try:
        status, body = get(server, "/readyz")
    finally:
        moved.rename(queue)
    detail = json.loads(body)
    assert status == 503
    assert detail["checks"]["queue_dir"] == {
        "ok": False,
        "path": str(queue),
        "error": "missing",
    }
    assert get(server, "/readyz")[0] == 200


def test_metrics_refused_outside_metrics_networks(tmp_path: Path) -> None:
    d = Daisy(tmp_path / "daisy")
    d.init()
    with_http(d)
    d.set_config("[http]", "metrics_networks", '["192.0.2.0/24"]')
    d.start()
    try:
        assert get(d, "/metrics")[0] == 403
        assert get(d, "/healthz")[0] == 200
    finally:
        d.stop()


def test_a_real_prometheus_scrapes_daisy(server: Daisy, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    port = free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: daisymail\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.ports['http']}']\n"
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={conf}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = urllib.parse.urlencode({"query": 'daisymail_messages_total{result="accepted"}'})
    found: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not found:
            time.sleep(0.5)
            try:
                url = f"http://127.0.0.1:{port}/api/v1/query?{query}"
                with urllib.request.urlopen(url, timeout=5) as r:
                    found = json.load(r)["data"]["result"]
            except (OSError, ValueError, KeyError):
                continue
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert [t["health"] for t in targets] == ["up"]
    assert found and found[0]["value"][1] == "1"  # type: ignore[index]


def test_the_documented_alert_rules_check_and_use_exposed_metrics(
    server: Daisy, tmp_path: Path
) -> None:
    promtool = require_tool("promtool")
    doc = (Path(__file__).parents[2] / "docs" / "admin.md").read_text()
    start = doc.index("groups:\n  - name: daisymail")
    rules = tmp_path / "rules.yml"
    rules.write_text(doc[start : doc.index("```", start)])
    res = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr
    exposed = get(server, "/metrics")[1]
    for name in (
        "daisymail_queue_messages",
        "daisymail_queue_oldest_age_seconds",
        "daisymail_deliveries_total",
        "daisymail_tls_certificate_expiry_timestamp_seconds",
    ):
        assert name in rules.read_text() and f"# TYPE {name.removesuffix('_total')}" in exposed


def test_the_api_is_off_unless_configured(server: Daisy) -> None:
    assert get(server, "/api/v1/openapi.json")[0] == 404
    assert get(server, "/api/v1/domains")[0] == 404
