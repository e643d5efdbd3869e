"""The outbound queue on disk: one message file and one envelope file per message.

Layout under the queue dir: ``msg/<id>`` holds the message (LF line ends, trace header
included) and ``env/<id>.json`` its envelope with per-recipient state. A message is
queued once its envelope exists: the message file is fsync'd first, then the envelope is
renamed into ``env/`` and the directory fsync'd, so a crash leaves either a complete
entry or an orphan message file that `recover` removes. Every state change rewrites the
envelope atomically (temp file, fsync, rename, fsync of the directory).

Files, not server state: the CLI reads and changes the same queue while the server runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from daisymail.store.durable import make_dirs, sync_dir, write_durable, write_file

RecipientState = Literal["pending", "delivered", "failed"]

FLUSH_TRIGGER = "flush"
"""A file in the queue dir: its presence asks the runner to retry everything now."""


class QueueError(Exception):
    """The queue could not be written; nothing was queued. Temporary."""


class CorruptEntry(QueueError):
    """An envelope that cannot be parsed: nobody to deliver to or to bounce to."""


CORRUPT_DIR = "corrupt"
"""Where unreadable entries are moved, for the admin to look at, instead of retried."""


@dataclass
class QueuedRecipient:
    """address: where to send; orcpt and notify: the DSN parameters (RFC 3461) as given."""

    address: str
    orcpt: str = ""
    notify: str = ""
    state: RecipientState = "pending"
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""
    notified: bool = False
    """The final notice (failure, or success) was sent."""
    delay_notified: bool = False
    dsn_passed: bool = False
    """Delivered to a server that took NOTIFY over (it offered DSN): it reports, not us."""

    def wants(self, word: str) -> bool:
        """Does NOTIFY name this word (SUCCESS, FAILURE, DELAY)?"""
        return word in {w.strip().upper() for w in self.notify.split(",")}

    @property
    def wants_failure_notice(self) -> bool:
        return not self.notify.strip() or self.wants("FAILURE")


@dataclass
class QueuedMessage:
    id: str
    sender: str
    recipients: list[QueuedRecipient]
    created: float
    envid: str = ""
    ret: str = ""
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""

    @property
    def pending(self) -> list[QueuedRecipient]:
        return [r for r in self.recipients if r.state == "pending"]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> QueuedMessage:
        raw: dict[str, Any] = json.loads(data)
        rcpts = [QueuedRecipient(**r) for r in raw.pop("recipients")]
        return cls(recipients=rcpts, **raw)


def new_id() -> str:
    return f"{time.time_ns():x}{secrets.token_hex(3)}"


class Prepared:
    """A message written and fsync'd but not yet visible to the runner.

    commit() makes it queued (one rename and a directory fsync); abort() forgets it.
    Lets the SMTP server deliver local copies first and queue the rest only if that
    worked, so that a 452 never leaves a queued copy behind.
    """

    def __init__(self, queue: Queue, message: QueuedMessage, tmp: str) -> None:
        self.queue = queue
        self.message = message
        self._tmp = tmp
        self.done = False

    def commit(self) -> str:
        final = self.queue.envelope_path(self.message.id)
        try:
            os.rename(self._tmp, final)
            sync_dir(os.path.dirname(final))
        except OSError as e:
            self.abort()
            raise QueueError(f"cannot queue {self.message.id}: {e}") from e
        self.done = True
        return self.message.id

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        for path in (self._tmp, self.queue.message_path(self.message.id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class Queue:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.msg_dir = os.path.join(directory, "msg")
        self.env_dir = os.path.join(directory, "env")

    def ensure(self) -> None:
        make_dirs(self.msg_dir)
        make_dirs(self.env_dir)

    def message_path(self, msg_id: str) -> str:
        return os.path.join(self.msg_dir, msg_id)

    def envelope_path(self, msg_id: str) -> str:
        return os.path.join(self.env_dir, f"{msg_id}.json")

    @property
    def flush_trigger(self) -> str:
        return os.path.join(self.directory, FLUSH_TRIGGER)

    # -- writing ---------------------------------------------------------------------------
    def prepare(
        self,
        chunks: Iterable[bytes],
        sender: str,
        recipients: list[QueuedRecipient],
        *,
        envid: str = "",
        ret: str = "",
    ) -> Prepared:
        """Write the message and its envelope durably under names the runner ignores."""
        try:
            self.ensure()
        except OSError as e:
            raise QueueError(f"cannot create the queue dir: {e}") from e
        now = time.time()
        msg = QueuedMessage(
            id=new_id(),
            sender=sender,
            recipients=recipients,
            created=now,
            envid=envid,
            ret=ret,
            next_attempt=now,
        )
        tmp = os.path.join(self.env_dir, f".{msg.id}.new")
        try:
            write_file(self.message_path(msg.id), chunks)
            sync_dir(self.msg_dir)
            write_file(tmp, [msg.to_json()])
        except OSError as e:
            Prepared(self, msg, tmp).abort()
            raise QueueError(f"cannot write to the queue: {e}") from e
        return Prepared(self, msg, tmp)

    def enqueue(
        self,
        chunks: Iterable[bytes],
        sender: str,
        recipients: list[QueuedRecipient],
        *,
        envid: str = "",
        ret: str = "",
    ) -> str:
        return self.prepare(chunks, sender, recipients, envid=envid, ret=ret).commit()

    def update(self, msg: QueuedMessage) -> None:
        """Replace the envelope atomically; QueueError if the message was removed."""
        path = self.envelope_path(msg.id)
        if not os.path.exists(path):
            raise QueueError(f"{msg.id} is no longer queued")
        try:
            write_durable(path, [msg.to_json()])
        except OSError as e:
            raise QueueError(f"cannot update {msg.id}: {e}") from e

    def remove(self, msg_id: str) -> bool:
        """Envelope first, so a crash in between leaves an orphan, never a dangling entry."""
        try:
            os.unlink(self.envelope_path(msg_id))
        except FileNotFoundError:
            return False
        sync_dir(self.env_dir)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.message_path(msg_id))
        return True

    # -- reading ---------------------------------------------------------------------------
    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.env_dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def get(self, msg_id: str) -> QueuedMessage | None:
        if not msg_id or "/" in msg_id or msg_id.startswith("."):
            return None
        try:
            with open(self.envelope_path(msg_id), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            return QueuedMessage.from_json(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise CorruptEntry(f"{self.envelope_path(msg_id)}: unreadable envelope: {e}") from e

    def messages(self) -> list[QueuedMessage]:
        """Every readable entry (corrupt ones are the runner's to move aside)."""
        out = []
        for msg_id in self.ids():
            with contextlib.suppress(CorruptEntry):
                msg = self.get(msg_id)
                if msg is not None:
                    out.append(msg)
        return out

    def quarantine(self, msg_id: str) -> str:
        """Move an entry's files to corrupt/ so it is never tried again; that directory."""
        target = os.path.join(self.directory, CORRUPT_DIR)
        make_dirs(target)
        for path, name in (
            (self.envelope_path(msg_id), f"{msg_id}.json"),
            (self.message_path(msg_id), msg_id),
        ):
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, os.path.join(target, name))
        sync_dir(self.env_dir)
        return target

    def read_message(self, msg_id: str) -> bytes:
        with open(self.message_path(msg_id), "rb") as f:
            return f.read()

    def iter_headers(self, msg_id: str) -> Iterator[bytes]:
        """The header lines of a queued message, up to the blank line."""
        with open(self.message_path(msg_id), "rb") as f:
            for line in f:
                if line in (b"\n", b"\r\n"):
                    return
                yield line

    # -- start-up and flush ----------------------------------------------------------------
    def recover(self, min_age: float = 3600.0) -> list[str]:
        """Remove leftovers of writes a crash interrupted; the queued ids that remain.

        Temporary envelopes and message files without an envelope are only removed once
        older than min_age: another process (sendmail) may be writing them right now.
        """
        self.ensure()
        now = time.time()
        queued = set(self.ids())
        for directory, names in ((self.env_dir, None), (self.msg_dir, queued)):
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                orphan = name.startswith(".") if names is None else name not in names
                with contextlib.suppress(FileNotFoundError):
                    if orphan and now - os.stat(path).st_mtime > min_age:
                        os.unlink(path)
        return sorted(queued)

    def request_flush(self) -> None:
        self.ensure()
        with open(self.flush_trigger, "ab"):
            pass

    def take_flush_request(self) -> bool:
        try:
            os.unlink(self.flush_trigger)
        except FileNotFoundError:
            return False
        return True
