"""Modified UTF-7 (RFC 3501 5.1.3), how IMAP4rev1 spells non-ASCII folder names.

Folders are kept on disk under their modified UTF-7 names (as Dovecot and Courier do);
a client that speaks IMAP4rev2 or enabled UTF8=ACCEPT sends and gets UTF-8 instead.
"""

from __future__ import annotations

import base64
import binascii


def encode(name: str) -> str:
    """UTF-8 text to modified UTF-7 (ASCII)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", "surrogatepass")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for c in name:
        if 0x20 <= ord(c) < 0x7F:
            flush()
            out.append("&-" if c == "&" else c)
        else:
            pending.append(c)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """Modified UTF-7 to text; a malformed name is returned unchanged."""
    if "&" not in name:
        return name
    out: list[str] = []
    i = 0
    try:
        while i < len(name):
            c = name[i]
            if c != "&":
                out.append(c)
                i += 1
                continue
            end = name.index("-", i)
            chunk = name[i + 1 : end]
            if not chunk:
                out.append("&")
            else:
                b64 = chunk.replace(",", "/")
                raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
                out.append(raw.decode("utf-16-be"))
            i = end + 1
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return name
    return "".join(out)
