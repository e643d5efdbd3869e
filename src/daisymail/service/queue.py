"""Queue operations: list, show, flush, remove, bounce; on the queue files, server or not.

``flush`` creates the trigger file a running server notices within a second. ``bounce``
returns a message to its sender now (a DSN as for a permanent failure) and removes it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from daisymail.config import Config
from daisymail.delivery import Injector, send_dsn
from daisymail.directory.base import Directory
from daisymail.mailauth.srs import from_config as srs_from_config
from daisymail.queue.spool import Queue, QueuedMessage, QueueError
from daisymail.quota import Quotas, parse_size
from daisymail.service.errors import ServiceError, conflict, invalid, not_found
from daisymail.store.base import StorageError
from daisymail.store.files import FileStore

_ID = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


@dataclass
class BounceResult:
    id: str
    sender: str
    notified: bool


@dataclass
class QueueOps:
    config: Config
    directory: Directory | None = None  # only bounce needs it (a DSN may be local)

    @property
    def queue(self) -> Queue:
        return Queue(str(self.config.path(self.config.queue.dir)))

    def list(self) -> list[QueuedMessage]:
        return self.queue.messages()

    def get(self, msg_id: str) -> QueuedMessage:
        if not _ID.match(msg_id) or msg_id.startswith("."):
            raise invalid(f"bad message id {msg_id!r}", "id")
        try:
            msg = self.queue.get(msg_id)
        except QueueError as e:  # an unreadable envelope
            raise conflict(str(e), "id") from None
        if msg is None:
            raise not_found(f"no message {msg_id} in the queue", "id")
        return msg

    def headers(self, msg_id: str) -> str:
        self.get(msg_id)
        return "".join(line.decode("utf-8", "replace") for line in self.queue.iter_headers(msg_id))

    def flush(self) -> None:
        try:
            self.queue.request_flush()
        except OSError as e:
            raise ServiceError(f"cannot request a flush: {e}", None, "conflict") from None

    def remove(self, msg_id: str) -> None:
        self.get(msg_id)
        if not self.queue.remove(msg_id):
            raise not_found(f"no message {msg_id} in the queue", "id")

    def bounce(self, msg_id: str) -> BounceResult:
        cfg, q = self.config, self.queue
        msg = self.get(msg_id)
        failed = msg.pending
        for r in failed:
            r.state = "failed"
            r.status = "5.0.0"
            r.diagnostic = "returned to the sender by the postmaster"
        notify = [r for r in failed if r.wants_failure_notice]
        notified = bool(msg.sender and notify)
        if notified:
            assert self.directory is not None, "bounce needs the directory"
            store = FileStore(str(cfg.path(cfg.storage.mail_dir)))
            injector = Injector(
                self.directory,
                store,
                q,
                str(cfg.path(cfg.storage.spool_dir)),
                srs_from_config(cfg.srs.secret),
                Quotas(store, parse_size(cfg.storage.quota)),
            )
            try:
                send_dsn(injector, cfg.hostname, msg, notify, q.read_message(msg_id), time.time())
            except (StorageError, QueueError, OSError) as e:
                raise conflict(f"cannot return {msg_id}: {e}", "id") from None
        q.remove(msg_id)
        return BounceResult(msg_id, msg.sender, notified)
