"""Small things every mailbox command module uses: the NO exception and folder names."""

from __future__ import annotations

from daisymail.imap.parser import Token, astring
from daisymail.imap.stream import Output
from daisymail.store.imap_folders import INBOX

Result = tuple[Output, bool | None]  # reply, new selected state (None: unchanged)


class CommandFailed(Exception):
    """A NO reply: str(e) is the text, code the response code."""

    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.code = code


def mailbox_name(tok: Token) -> str:
    name = astring(tok)
    if name.upper() == INBOX:
        return INBOX
    return name
