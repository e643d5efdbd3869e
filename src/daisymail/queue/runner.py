"""Delivering the queue: who is due, retries with back-off, expiry, bounces.

The runner scans the queue dir every second (so messages queued by ``daisymail
sendmail`` are seen without a signal) and at once when woken by the SMTP server.
A message is tried when its next attempt is due, or for everyone when the flush trigger
file appears (``daisymail queue flush``). Each message's recipients are grouped by
domain and handed over per route, with at most ``destination_concurrency`` connections
to one destination. After each attempt the envelope is rewritten with every recipient's
state before anything else happens, so a kill -9 repeats at most the last hand-over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from email.utils import formatdate

from daisymail.config import Queue as QueueConfig
from daisymail.observability import event
from daisymail.queue import remote
from daisymail.queue.bounce import (
    EXPIRED_STATUS,
    Action,
    build_dsn,
    delay_notice_due,
    should_notify,
    success_notice_due,
)
from daisymail.queue.inject import Injector
from daisymail.queue.spool import Queue, QueuedMessage, QueuedRecipient, QueueError
from daisymail.store.base import StorageError

log = logging.getLogger("daisymail.queue")
SCAN_INTERVAL = 1.0
MAX_MESSAGES_IN_FLIGHT = 50

Deliver = Callable[
    [remote.Route, str, Sequence[remote.Outgoing], bytes, str, str, str],
    Awaitable[dict[str, remote.Outcome]],
]


def backoff(attempts: int, schedule: Sequence[int]) -> int:
    """Seconds to wait after the given number of failed attempts; the last step repeats."""
    if not schedule:
        return 300
    return schedule[min(max(attempts, 1), len(schedule)) - 1]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


async def _deliver_default(
    route: remote.Route,
    sender: str,
    rcpts: Sequence[remote.Outgoing],
    message: bytes,
    helo: str,
    envid: str,
    ret: str,
) -> dict[str, remote.Outcome]:
    return await remote.deliver(route, sender, rcpts, message, helo=helo, envid=envid, ret=ret)


class Runner:
    def __init__(
        self,
        queue: Queue,
        settings: Callable[[], QueueConfig],
        injector: Injector,
        hostname: str,
        *,
        clock: Callable[[], float] = time.time,
        deliver: Deliver = _deliver_default,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.injector = injector
        self.hostname = hostname
        self.clock = clock
        self.deliver = deliver
        self._wake = asyncio.Event()
        self._due: dict[str, float] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        recovered = await asyncio.to_thread(self.queue.recover)
        event(log, "queue.recovered", messages=len(recovered))
        while not self._stopping:
            self._wake.clear()
            try:
                await self._scan()
            except Exception:
                log.exception("queue.scan_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SCAN_INTERVAL)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _scan(self) -> None:
        flush = self.queue.take_flush_request()
        ids = self.queue.ids()
        present = set(ids)
        for gone in set(self._due) - present:
            del self._due[gone]
        now = self.clock()
        for msg_id in ids:
            if msg_id in self._busy or len(self._busy) >= MAX_MESSAGES_IN_FLIGHT:
                continue
            due = self._due.get(msg_id)
            if due is None or flush:
                msg = self.queue.get(msg_id)
                if msg is None:
                    continue
                due = 0.0 if flush else msg.next_attempt
                self._due[msg_id] = due
            if due <= now:
                self._busy.add(msg_id)
                task = asyncio.create_task(self._attempt(msg_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _attempt(self, msg_id: str) -> None:
        try:
            msg = self.queue.get(msg_id)
            if msg is not None:
                await self.process(msg)
                self._due[msg_id] = msg.next_attempt
        except Exception:
            log.exception("queue.attempt_failed id=%s", msg_id)
            self._due[msg_id] = self.clock() + backoff(1, self.settings().retry_schedule)
        finally:
            self._busy.discard(msg_id)

    async def process(self, msg: QueuedMessage) -> None:
        """One attempt at every pending recipient, then save, bounce and reschedule."""
        cfg = self.settings()
        data = await asyncio.to_thread(self.queue.read_message, msg.id)
        groups: dict[str, list[QueuedRecipient]] = {}
        for r in msg.pending:
            groups.setdefault(domain_of(r.address), []).append(r)
        await asyncio.gather(
            *(self._deliver_domain(msg, d, rs, data, cfg) for d, rs in groups.items())
        )
        msg.attempts += 1
        now = self.clock()
        if msg.pending and now - msg.created >= cfg.lifetime:
            for r in msg.pending:
                r.state = "failed"
                r.status = EXPIRED_STATUS
                r.diagnostic = f"delivery time expired; last error: {r.diagnostic or 'none'}"
        msg.next_attempt = now + backoff(msg.attempts, cfg.retry_schedule)
        if not await self._save(msg):
            return
        if not await self._notify(msg, data, cfg, now):
            return
        if not msg.pending:
            await asyncio.to_thread(self.queue.remove, msg.id)
            event(log, "queue.done", id=msg.id)

    async def _notify(self, msg: QueuedMessage, data: bytes, cfg: QueueConfig, now: float) -> bool:
        """Send the DSNs now due (failure, relayed, delay) and record them; False when one
        could not be sent, and the message is kept for a retry soon."""
        due: list[tuple[Action, list[QueuedRecipient]]] = [
            (
                "failed",
                [r for r in msg.recipients if r.state == "failed" and should_notify(msg, r)],
            ),
            ("relayed", [r for r in msg.recipients if success_notice_due(msg, r)]),
            (
                "delayed",
                [r for r in msg.pending if delay_notice_due(msg, r, now, cfg.delay_warning)],
            ),
        ]
        sent = False
        for action, rcpts in due:
            if not rcpts:
                continue
            try:
                await asyncio.to_thread(
                    self.send_dsn, msg, rcpts, data, action, msg.created + cfg.lifetime
                )
            except (StorageError, QueueError, OSError) as e:
                event(log, "queue.bounce_deferred", logging.WARNING, id=msg.id, error=str(e))
                msg.next_attempt = now + backoff(1, cfg.retry_schedule)
                await self._save(msg)
                return False
            for r in rcpts:
                if action == "delayed":
                    r.delay_notified = True
                else:
                    r.notified = True
            sent = True
        if sent and msg.pending:
            await self._save(msg)
        return True

    async def _save(self, msg: QueuedMessage) -> bool:
        try:
            await asyncio.to_thread(self.queue.update, msg)
        except QueueError as e:
            event(log, "queue.update_failed", logging.WARNING, id=msg.id, error=str(e))
            return False
        return True

    async def _deliver_domain(
        self,
        msg: QueuedMessage,
        domain: str,
        rcpts: list[QueuedRecipient],
        data: bytes,
        cfg: QueueConfig,
    ) -> None:
        try:
            route = await remote.resolve_route(domain, cfg)
        except remote.RouteError as e:
            for r in rcpts:
                self._record(
                    msg,
                    r,
                    remote.Outcome("permanent" if e.permanent else "temporary", e.status, e.text),
                )
            return
        slot = self._slots.setdefault(route.key, asyncio.Semaphore(cfg.destination_concurrency))
        outgoing = [remote.Outgoing(r.address, r.notify, r.orcpt) for r in rcpts]
        async with slot:
            started = time.monotonic()
            results = await self.deliver(
                route, msg.sender, outgoing, data, self.hostname, msg.envid, msg.ret
            )
            seconds = round(time.monotonic() - started, 4)
        event(log, "queue.attempt", id=msg.id, route=route.key, rcpts=len(rcpts), seconds=seconds)
        for r in rcpts:
            outcome = results.get(r.address) or remote.Outcome("temporary", "4.0.0", "no answer")
            self._record(msg, r, outcome)

    def _record(self, msg: QueuedMessage, r: QueuedRecipient, outcome: remote.Outcome) -> None:
        r.status, r.diagnostic, r.remote_mta = (
            outcome.status,
            outcome.diagnostic,
            outcome.remote_mta,
        )
        if outcome.kind == "delivered":
            r.state = "delivered"
            r.dsn_passed = outcome.dsn_passed
        elif outcome.kind == "permanent":
            r.state = "failed"
        event(
            log,
            f"queue.{outcome.kind}",
            logging.INFO if outcome.kind == "delivered" else logging.WARNING,
            id=msg.id,
            rcpt=r.address,
            relay=outcome.remote_mta or "-",
            status=outcome.status,
            reply=outcome.diagnostic,
        )

    def send_dsn(
        self,
        msg: QueuedMessage,
        rcpts: list[QueuedRecipient],
        data: bytes,
        action: Action = "failed",
        retry_until: float | None = None,
    ) -> None:
        send_dsn(self.injector, self.hostname, msg, rcpts, data, self.clock(), action, retry_until)


def send_dsn(
    injector: Injector,
    hostname: str,
    msg: QueuedMessage,
    failed: list[QueuedRecipient],
    data: bytes,
    now: float,
    action: Action = "failed",
    retry_until: float | None = None,
) -> None:
    """Deliver a DSN to the envelope sender, locally or through the queue."""
    dsn = build_dsn(
        msg, failed, data, hostname=hostname, now=now, action=action, retry_until=retry_until
    )
    trace = (
        f"Received: by {hostname} (Daisy) id {msg.id}-dsn;\n"
        f"\t{formatdate(now, localtime=False, usegmt=True)}\n"
    ).encode()
    result = injector.inject(dsn, "", [msg.sender], trace=trace)
    if result.rejected:
        event(
            log,
            "queue.bounce_undeliverable",
            logging.WARNING,
            id=msg.id,
            reason=result.rejected[0][1],
        )
    else:
        event(
            log,
            "queue.bounced" if action == "failed" else "queue.dsn",
            id=msg.id,
            to=msg.sender,
            action=None if action == "failed" else action,
            rcpts=",".join(r.address for r in failed),
        )
