"""Prometheus metrics: counters fed by the events the logs already name, gauges at scrape.

Counting from the event stream (observability.add_hook) keeps the servers free of metric
calls: one event line and one counter per thing that happens. What is a state rather than
a happening (sessions open, queue size, certificate expiry) is read when scraped.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daisymail.tls import certificate_expiry

IMPLICIT_TLS = frozenset({"submissions", "pop3s", "imaps"})
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.\d{1,3}\b")
_BASIC = re.compile(r"^\s*([245])\d\d\b")
_STORAGE_EVENTS = frozenset(
    {"smtp.message.deferred", "pop3.login.storage", "pop3.commit.failed", "queue.update_failed"}
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def status_class(text: object) -> str:
    """The enhanced status code class of a reply ("5.7"), or its first digit ("5")."""
    s = str(text or "")
    m = _ENHANCED.search(s)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    m = _BASIC.match(s)
    return m.group(1) if m else "unknown"


@dataclass
class _Session:
    service: str
    tls: bool


@dataclass
class ScrapeSources:
    """Where scrape-time values come from; callables so a reload is seen at once."""

    sessions_open: Callable[[], Mapping[str, int]]
    queue_dir: Callable[[], str]
    certificates: Callable[[], Iterable[Path]]


class Metrics:
    """One registry per server; ``on_event`` is the observability hook."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._sessions: dict[str, _Session] = {}
        self.messages = Counter(
            "daisymail_messages",
            "SMTP messages and recipients by listener, result and status class",
            ["listener", "result", "status"],
            registry=r,
        )
        self.deliveries = Counter(
            "daisymail_deliveries",
            "Deliveries by result: local (to a mailbox) or the queue's delivered, "
            "temporary and permanent outcomes per recipient",
            ["result"],
            registry=r,
        )
        self.sessions = Counter(
            "daisymail_sessions",
            "Sessions ended, per service, with or without TLS",
            ["service", "tls"],
            registry=r,
        )
        self.logins = Counter(
            "daisymail_logins",
            "Login attempts by service and result",
            ["service", "result"],
            registry=r,
        )
        self.throttled = Counter(
            "daisymail_throttle_hits", "Login attempts delayed by the throttle", registry=r
        )
        self.refused = Counter(
            "daisymail_connections_refused",
            "Connections turned away by the connection limits",
            ["service"],
            registry=r,
        )
        self.storage_errors = Counter(
            "daisymail_storage_errors",
            "Mailbox, spool and queue write or read failures",
            ["event"],
            registry=r,
        )
        self.mailauth = Counter(
            "daisymail_mailauth_verdicts",
            "DKIM, SPF and DMARC results of received mail on port 25",
            ["method", "result"],
            registry=r,
        )
        self.smtp_transaction = Histogram(
            "daisymail_smtp_transaction_seconds",
            "From DATA to the final reply of an accepted message",
            ["listener"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.mailbox_delivery = Histogram(
            "daisymail_mailbox_delivery_seconds",
            "Making a received message durable in its mailboxes and the queue",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_attempt = Histogram(
            "daisymail_queue_attempt_seconds",
            "One queue delivery attempt to one destination",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def add_sources(self, sources: ScrapeSources) -> None:
        self.registry.register(_StateCollector(sources))

    # -- the hook -------------------------------------------------------------------------
    def on_event(self, name: str, fields: dict[str, object]) -> None:
        """Count one event. Never raises: a metric must not break the session."""
        try:
            self._count(name, fields)
        except Exception:  # pragma: no cover - defensive, a counter bug is not a crash
            pass

    def _service(self, fields: Mapping[str, object]) -> str:
        s = self._sessions.get(str(fields.get("sid", "")))
        return s.service if s is not None else "unknown"

    def _count(self, name: str, fields: dict[str, object]) -> None:
        proto, _, what = name.partition(".")
        sid = str(fields.get("sid", ""))
        if what == "connect":
            service = str(fields.get("service", proto))
            tls = bool(fields.get("tls")) or service in IMPLICIT_TLS
            self._sessions[sid] = _Session(service, tls)
        elif what in ("tls",):
            s = self._sessions.get(sid)
            if s is not None:
                s.tls = True
        elif what == "disconnect":
            s = self._sessions.pop(sid, None)
            if s is not None:
                self.sessions.labels(s.service, "yes" if s.tls else "no").inc()
        elif what == "refused":
            self.refused.labels(proto).inc()
        elif what in ("auth", "login"):
            self.logins.labels(self._service(fields), "success").inc()
        elif what in ("auth.failed", "login.failed"):
            self.logins.labels(self._service(fields), "failure").inc()
        elif what in ("login.inuse", "login.nomailbox", "login.storage"):
            self.logins.labels(self._service(fields), "error").inc()
        if name in _STORAGE_EVENTS:
            self.storage_errors.labels(name).inc()
        if proto == "smtp":
            self._smtp(what, fields)
        elif proto == "queue":
            self._queue(what, fields)
        elif name == "auth.throttled":
            self.throttled.inc()
        if name == "smtp.verdict" or (name == "smtp.message.accepted" and "spf" in fields):
            self._verdict(fields)

    def _verdict(self, fields: dict[str, object]) -> None:
        """A verdict: smtp.verdict (refused) or smtp.message.accepted of checked mail,
        with spf=RESULT dkim=RESULT:DOMAIN,... dmarc=RESULT:DOMAIN."""
        self.mailauth.labels("spf", str(fields.get("spf") or "none").lower()).inc()
        for one in str(fields.get("dkim") or "none").split(","):
            self.mailauth.labels("dkim", one.partition(":")[0].lower() or "none").inc()
        dmarc = str(fields.get("dmarc") or "none").partition(":")[0]
        self.mailauth.labels("dmarc", dmarc.lower() or "none").inc()

    def _smtp(self, what: str, fields: dict[str, object]) -> None:
        listener = self._service(fields)
        if what == "message.accepted":
            self.messages.labels(listener, "accepted", "2.0").inc()
            boxes = [b for b in str(fields.get("mailboxes") or "").split(",") if b]
            if boxes:
                self.deliveries.labels("local").inc(len(boxes))
            seconds = fields.get("seconds")
            if isinstance(seconds, int | float):
                self.smtp_transaction.labels(listener).observe(seconds)
            stored = fields.get("store_seconds")
            if isinstance(stored, int | float):
                self.mailbox_delivery.observe(stored)
        elif what in ("mail.refused", "rcpt.refused", "message.refused"):
            status = status_class(fields.get("reply") or fields.get("reason"))
            self.messages.labels(listener, "rejected", status).inc()
        elif what == "message.deferred":
            self.messages.labels(listener, "deferred", "4.3").inc()

    def _queue(self, what: str, fields: dict[str, object]) -> None:
        if what in ("delivered", "temporary", "permanent"):
            self.deliveries.labels(what).inc()
        elif what == "attempt":
            seconds = fields.get("seconds")
            if isinstance(seconds, int | float):
                self.queue_attempt.observe(seconds)


class _StateCollector(Collector):
    """Gauges read at scrape time: sessions open, the queue, certificate expiry."""

    def __init__(self, sources: ScrapeSources) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        open_ = GaugeMetricFamily(
            "daisymail_sessions_open", "Sessions open now, per service", labels=["service"]
        )
        for service, count in sorted(self.sources.sessions_open().items()):
            open_.add_metric([service], count)
        yield open_
        size, oldest = queue_state(self.sources.queue_dir())
        yield GaugeMetricFamily("daisymail_queue_messages", "Messages in the queue", value=size)
        yield GaugeMetricFamily(
            "daisymail_queue_oldest_age_seconds",
            "Age of the oldest message in the queue (0 when empty)",
            value=oldest,
        )
        expiry = GaugeMetricFamily(
            "daisymail_tls_certificate_expiry_timestamp_seconds",
            "When each certificate expires (Unix time)",
            labels=["path"],
        )
        for path in self.sources.certificates():
            try:
                expiry.add_metric([str(path)], certificate_expiry(path).timestamp())
            except (OSError, ValueError):
                continue
        yield expiry


def queue_state(queue_dir: str) -> tuple[int, float]:
    """How many messages wait, and the age of the oldest (by its message file's mtime)."""
    env_dir, msg_dir = os.path.join(queue_dir, "env"), os.path.join(queue_dir, "msg")
    now, size, oldest = time.time(), 0, 0.0
    try:
        names = [e.name for e in os.scandir(env_dir) if e.name.endswith(".json")]
    except OSError:
        return 0, 0.0
    for name in names:
        try:
            mtime = os.stat(os.path.join(msg_dir, name.removesuffix(".json"))).st_mtime
        except OSError:
            continue
        size += 1
        oldest = max(oldest, now - mtime)
    return size, oldest
