"""Mailbox quotas for the admin CLI and API: set one mailbox's limit, show limits and use.

The limit is kept in the Maildir itself (``daisymail-quota``), so every node sharing
the mail volume applies it at once without a directory change; usage is what SMTP and
IMAP count (daisymail.quota). mbox mailboxes have no quota: it needs Maildir.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from daisymail.config import Config
from daisymail.directory.base import Directory
from daisymail.directory.model import Mailbox
from daisymail.quota import QUOTA_FILE, Quotas, own_limit, parse_size
from daisymail.service.errors import ServiceError, conflict, invalid, not_found
from daisymail.store.durable import write_durable
from daisymail.store.files import FileStore


@dataclass
class QuotaOps:
    config: Config
    directory: Directory

    @property
    def quotas(self) -> Quotas:
        store = FileStore(str(self.config.path(self.config.storage.mail_dir)))
        return Quotas(store, parse_size(self.config.storage.quota))

    def describe(self, box: Mailbox, quotas: Quotas | None = None) -> dict[str, Any]:
        """The mailbox record with ``quota`` (octets, 0: none), ``quota_default`` (the
        [storage] quota applies) and ``used`` (octets; null for mbox, which has none)."""
        q = quotas or self.quotas
        root = q.root(box)
        own = own_limit(root) if root else None
        return {
            "name": box.name,
            "format": box.format,
            "path": box.path,
            "quota": q.limit(box),
            "quota_default": root is not None and own is None,
            "used": q.usage(box),
        }

    def describe_all(self, boxes: list[Mailbox]) -> list[dict[str, Any]]:
        q = self.quotas
        return [self.describe(b, q) for b in boxes]

    def set_quota(self, name: str, quota: str | int) -> dict[str, Any]:
        """quota: octets, a size text (``500M``, ``2G``, ``0`` for none) or ``default``
        (the mailbox follows [storage] quota again). The mailbox as ``describe`` shows it."""
        box = self.directory.snapshot().mailboxes.get(name.lower())
        if box is None:
            raise not_found(f"no such mailbox: {name.lower()}", "name")
        octets = _octets(quota)
        q = self.quotas
        root = q.root(box)
        if root is None:
            raise conflict(
                f"mailbox {box.name} is an mbox file; quotas need Maildir: "
                f"daisymail mailbox convert {box.name} --to maildir",
                "name",
            )
        target = os.path.join(root, QUOTA_FILE)
        try:
            if octets is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
            else:
                os.makedirs(root, mode=0o700, exist_ok=True)
                write_durable(target, [b"%d\n" % octets])
        except OSError as e:
            raise ServiceError(f"cannot write {target}: {e}", "quota", "conflict") from None
        return self.describe(box, q)


def _octets(quota: str | int) -> int | None:
    """None for ``default``; a ServiceError naming the field for anything not a size."""
    if isinstance(quota, bool):
        raise invalid("quota: expected a size such as 500M, octets, or 'default'", "quota")
    if isinstance(quota, int):
        if quota < 0:
            raise invalid("quota: must not be negative", "quota")
        return quota
    if quota.strip().lower() == "default":
        return None
    try:
        return parse_size(quota)
    except ValueError as e:
        raise invalid(f"quota: {e}", "quota") from None
