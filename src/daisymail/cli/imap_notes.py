"""What `check` and `import legacy` say about mailboxes IMAP cannot serve (mbox files)."""

from __future__ import annotations

from collections.abc import Iterable

from daisymail.directory.model import Mailbox
from daisymail.store.files import is_maildir


def mbox_notes(mailboxes: Iterable[Mailbox]) -> list[str]:
    """One line per mbox mailbox, with the command that fixes it."""
    return [
        f"imap: {box.name}: an mbox file, which IMAP cannot serve (logins are "
        f"refused); fix: daisymail mailbox convert {box.name} --to maildir "
        "(or every one: daisymail mailbox convert --all --to maildir)"
        for box in sorted(mailboxes, key=lambda b: b.name)
        if not is_maildir(box)
    ]
