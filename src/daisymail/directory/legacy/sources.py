"""Reading the legacy files from disk: which ones exist, and never an exception.

Every problem (missing, unreadable, not a regular file, a dangling symlink) becomes a
finding, so a half-broken legacy tree still imports what it can.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from daisymail.directory.legacy.findings import Finding, Severity

# A legacy map or password file is a few megabytes at most; refuse anything absurd.
MAX_FILE_SIZE = 64 * 1024 * 1024
DEFAULT_SPOOL = "/var/spool/mail"

Signature = tuple[int, int, int, int] | None


@dataclass(frozen=True)
class LegacyPaths:
    """spool_dir is where procmail delivered. With spool_from_teapop (an import without
    --spool-dir, and live mode), the base directory teapop.passwd names wins: on the
    legacy box teapop read the very files procmail wrote, so that is where they are."""

    sendmail_dir: str = "/etc/mail"
    teapop_passwd: str = "/etc/teapop.passwd"
    spool_dir: str = DEFAULT_SPOOL
    spool_from_teapop: bool = True

    def candidates(self, name: str) -> list[str]:
        """The sendmail dir, then its parent (for ``/etc/sendmail.cw``)."""
        base = Path(self.sendmail_dir)
        return [str(base / name), str(base.parent / name)]


class Reader:
    """Reads files once each, remembering what it looked at for change detection."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.watched: dict[str, Signature] = {}

    def exists(self, path: str) -> bool:
        self.watched.setdefault(path, signature(path))
        return os.path.lexists(path)

    def read(self, path: str, *, required: bool = True) -> bytes | None:
        self.watched[path] = signature(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if required:
                self._note(path, "error", "file not found")
            return None
        except OSError as e:
            self._note(path, "error", f"cannot read: {e.strerror}")
            return None
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.path.realpath(path, strict=True)
            except OSError:
                self._note(path, "error", "symbolic link to a file that does not exist")
                return None
            self._note(path, "info", f"symbolic link; read through it ({target})")
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    self._note(path, "error", "not a regular file; skipped")
                    return None
                if st.st_size > MAX_FILE_SIZE:
                    self._note(path, "error", f"larger than {MAX_FILE_SIZE} bytes; skipped")
                    return None
                return f.read()
        except IsADirectoryError:
            self._note(path, "error", "is a directory; skipped")
        except OSError as e:
            self._note(path, "error", f"cannot read: {e.strerror}")
        return None

    def _note(self, path: str, severity: Severity, message: str) -> None:
        self.findings.append(Finding(path, 0, severity, message))


def signature(path: str) -> Signature:
    """What changes when a file is edited, replaced or removed (followed through links)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_dev)
