"""The HTTP side's pure parts: status classes, the event-to-metric mapping, autoconfig
choices, MTA-STS host matching, sd_notify and the [http] config checks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from daisymail.config import ConfigError, from_dict
from daisymail.http import autoconfig
from daisymail.http.metrics import Metrics, status_class
from daisymail.mailauth import mta_sts
from daisymail.sdnotify import notify


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("550 5.1.1 User unknown", "5.1"),
        ("452 4.3.1 Insufficient storage", "4.3"),
        ("550 5.7.1", "5.7"),
        ("554 Transaction failed", "5"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_status_class(text: str | None, expected: str) -> None:
    assert status_class(text) == expected


def value(m: Metrics, name: str, **labels: str) -> float:
    got = m.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_events_become_counters() -> None:
    m = Metrics()
    m.on_event("smtp.connect", {"sid": "s1", "service": "submission", "tls": False})
    m.on_event("smtp.tls", {"sid": "s1"})
    m.on_event("smtp.auth.failed", {"sid": "s1"})
    m.on_event("smtp.auth", {"sid": "s1"})
    m.on_event("smtp.rcpt.refused", {"sid": "s1", "reply": "550 5.1.1 User unknown"})
    m.on_event(
        "smtp.message.accepted",
        {"sid": "s1", "mailboxes": "a,b", "seconds": 0.2, "store_seconds": 0.01},
    )
    m.on_event("smtp.disconnect", {"sid": "s1"})
    m.on_event("pop3.connect", {"sid": "p1", "service": "pop3s"})
    m.on_event("pop3.login.failed", {"sid": "p1"})
    m.on_event("pop3.disconnect", {"sid": "p1"})
    m.on_event("queue.attempt", {"id": "q", "seconds": 1.5})
    m.on_event("queue.temporary", {"id": "q"})
    m.on_event("auth.throttled", {"client": "192.0.2.1"})
    m.on_event("smtp.message.deferred", {"sid": "gone"})
    m.on_event("pop3.refused", {"sid": "x", "reason": "too many"})
    m.on_event(
        "smtp.verdict",
        {"sid": "s1", "spf": "softfail", "dkim": "pass:a.test,fail:b.test", "dmarc": "pass:a.test"},
    )
    m.on_event(  # checked mail that was accepted: its verdict is in the accepted line
        "smtp.message.accepted",
        {"sid": "s2", "spf": "pass", "dkim": "none", "dmarc": "none:c.test", "action": "accept"},
    )
    m.on_event("smtp.message.accepted", {"sid": "s3"})  # not checked: no verdict
    assert value(m, "daisymail_sessions_total", service="submission", tls="yes") == 1
    assert value(m, "daisymail_sessions_total", service="pop3s", tls="yes") == 1
    assert value(m, "daisymail_logins_total", service="submission", result="failure") == 1
    assert value(m, "daisymail_logins_total", service="submission", result="success") == 1
    assert value(m, "daisymail_logins_total", service="pop3s", result="failure") == 1
    rejected = {"listener": "submission", "result": "rejected", "status": "5.1"}
    assert value(m, "daisymail_messages_total", **rejected) == 1
    assert value(m, "daisymail_deliveries_total", result="local") == 2
    assert value(m, "daisymail_deliveries_total", result="temporary") == 1
    assert value(m, "daisymail_queue_attempt_seconds_count") == 1
    assert value(m, "daisymail_smtp_transaction_seconds_sum", listener="submission") == 0.2
    assert value(m, "daisymail_throttle_hits_total") == 1
    assert value(m, "daisymail_storage_errors_total", event="smtp.message.deferred") == 1
    assert value(m, "daisymail_connections_refused_total", service="pop3") == 1
    assert value(m, "daisymail_mailauth_verdicts_total", method="dkim", result="pass") == 1
    assert value(m, "daisymail_mailauth_verdicts_total", method="dkim", result="fail") == 1
    assert value(m, "daisymail_mailauth_verdicts_total", method="spf", result="softfail") == 1
    assert value(m, "daisymail_mailauth_verdicts_total", method="dmarc", result="pass") == 1
    assert value(m, "daisymail_mailauth_verdicts_total", method="spf", result="pass") == 1
    assert value(m, "daisymail_mailauth_verdicts_total", method="dkim", result="none") == 1
    assert value(m, "daisymail_mailauth_verdicts_total", method="dmarc", result="none") == 1


def test_a_bad_event_never_raises() -> None:
    m = Metrics()
    m.on_event("smtp.message.accepted", {"seconds": "not a number", "mailboxes": object()})


def test_autoconfig_lists_configured_services_and_imap_only_when_present() -> None:
    c = from_dict(
        {
            "hostname": "mx.example.org",
            "http": {"client_host": "mail.example.org"},
            "listen": {"imap": [], "imaps": []},
        }
    )
    kinds = [(e.kind, e.port, e.tls) for e in autoconfig.endpoints(c)]
    assert ("imap", 993, "SSL") not in kinds
    assert kinds[0] == ("pop3", 995, "SSL")
    c.listen.imaps = ["0.0.0.0:993"]
    first = autoconfig.endpoints(c)[0]
    assert (first.kind, first.host, first.port, first.tls) == (
        "imap",
        "mail.example.org",
        993,
        "SSL",
    )


def test_client_host_defaults_to_the_certificates_name(tmp_path: Path) -> None:
    from daisymail.tls import make_self_signed

    tls = tmp_path / "tls"
    make_self_signed(tls / "cert.pem", tls / "key.pem", "cert-name.example.org")
    c = from_dict({"hostname": "other.example.org", "data_dir": str(tmp_path)})
    assert autoconfig.client_host(c) == "cert-name.example.org"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("ann@a.test", True),
        ("Ann@A.TEST.", True),
        ("ann@c.test", False),
        ("ann", False),
        ("<ann@a.test>", False),
        ("ann@a.test\r\nX: y", False),
        ("a" * 400 + "@a.test", False),
    ],
)
def test_hosted_address(text: str, ok: bool) -> None:
    assert (autoconfig.hosted_address(text, frozenset({"a.test"})) is not None) == ok


def test_mta_sts_host_matching_and_policy() -> None:
    hosted = frozenset({"a.test"})
    assert mta_sts.policy_domain("mta-sts.a.test", hosted) == "a.test"
    assert mta_sts.policy_domain("MTA-STS.A.test.:443", hosted) == "a.test"
    assert mta_sts.policy_domain("a.test", hosted) is None
    assert mta_sts.policy_domain("mta-sts.b.test", hosted) is None
    c = from_dict({"hostname": "mx.a.test", "http": {"mta_sts": {"mode": "testing"}}})
    assert mta_sts.policy_text(c) == (
        "version: STSv1\r\nmode: testing\r\nmx: mx.a.test\r\nmax_age: 604800\r\n"
    )
    assert (mta_sts.txt_record(c) or "").startswith("v=STSv1; id=")
    assert mta_sts.policy_text(from_dict({})) is None


@pytest.mark.parametrize(
    "http",
    [
        {"listen": ["nope"]},
        {"metrics_networks": ["10.0.0.0/99"]},
        {"mta_sts": {"mode": "strict"}},
        {"mta_sts": {"max_age": 0}},
        {"client_host": "a b"},
    ],
)
def test_bad_http_config_is_refused(http: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="http"):
        from_dict({"http": http})


def test_sd_notify_writes_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert notify("READY=1")
        assert s.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify("READY=1")
