"""Can a mailbox's path ever hold mail? `check` asks this of every mailbox record.

A path under a regular file (``/var/mail/bob/x`` with ``/var/mail/bob`` an mbox) can
never be created, an mbox path that is a directory or a Maildir path that is a file can
never be delivered to, and delivery refuses a symlinked mbox: each would only show up
as a failed delivery, so `check` names them first.
"""

from __future__ import annotations

import os
import stat

from daisymail.directory.model import Mailbox
from daisymail.store.base import StorageError
from daisymail.store.files import FileStore, is_maildir


def mailbox_path_problem(store: FileStore, box: Mailbox) -> str | None:
    """Why the mailbox's path cannot be used, or None when it can (or can be created)."""
    try:
        path = store.resolve_path(box).rstrip("/") or "/"
    except StorageError as e:
        return str(e)
    maildir = is_maildir(box)
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        try:
            st = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(parent)
            continue
        except OSError as e:
            return f"{path}: {parent} cannot be examined ({e.strerror})"
        if not stat.S_ISDIR(st.st_mode):
            return f"{path} lies under {parent}, which is not a folder: it can never be created"
        break
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        return f"{path} cannot be examined ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        if maildir and os.path.isdir(path):
            return None
        return f"{path} is a symbolic link: deliveries refuse it"
    if maildir and not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a folder, so it cannot be a Maildir"
    if not maildir and not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file, so it cannot be an mbox"
    return None
