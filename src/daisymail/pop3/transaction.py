"""The POP3 transaction state (RFC 1939 section 5): STAT, LIST, UIDL, RETR, TOP, DELE,
NOOP and RSET over the maildrop the login opened, and which messages QUIT removes.

A mixin of Pop3Session (protocol.py), which dispatches these commands to it once the
login succeeded; kept apart because it is one job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from daisymail.pop3.events import Event, SendMessage, Settings, _Reply
from daisymail.store.base import MessageInfo

_Field = Callable[[MessageInfo], str]


def _message_number(text: str, count: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _Reply("-ERR Message number must be a positive integer")
    number = int(text)
    if not 1 <= number <= count:
        raise _Reply("-ERR No such message")
    return number - 1


class TransactionCommands:
    """The transaction commands of Pop3Session, which provides the fields and output below."""

    settings: Settings
    _messages: Sequence[MessageInfo]
    _deleted: set[int]
    _read: set[int]

    def _reply(self, line: str) -> None:
        raise NotImplementedError

    def _multiline(self, first: str, rows: Iterable[str]) -> None:
        raise NotImplementedError

    def _to_remove(self) -> set[int]:
        if self.settings.delete_after_retr or self.settings.delete_after_top:
            return self._deleted | self._read
        return self._deleted

    def _totals(self) -> tuple[int, int]:
        if not self._deleted:
            return len(self._messages), sum(m.size for m in self._messages)
        live = [m for i, m in enumerate(self._messages) if i not in self._deleted]
        return len(live), sum(m.size for m in live)

    def _args(self, arg: str | None, syntax: str, low: int, high: int) -> list[str]:
        args = arg.split(" ") if arg is not None else []
        if not low <= len(args) <= high:
            raise _Reply(f"-ERR Syntax: {syntax}")
        return args

    def _live(self, text: str) -> int:
        index = _message_number(text, len(self._messages))
        if index in self._deleted:
            raise _Reply(f"-ERR Message {index + 1} already deleted")
        return index

    def _do_stat(self, arg: str | None) -> Event | None:
        self._args(arg, "STAT", 0, 0)
        count, octets = self._totals()
        self._reply(f"+OK {count} {octets}")
        return None

    def _do_list(self, arg: str | None) -> Event | None:
        return self._listing(arg, "LIST [message]", lambda m: str(m.size))

    def _do_uidl(self, arg: str | None) -> Event | None:
        return self._listing(arg, "UIDL [message]", lambda m: m.uidl)

    def _listing(self, arg: str | None, syntax: str, field: _Field) -> Event | None:
        args = self._args(arg, syntax, 0, 1)
        if args:
            index = self._live(args[0])
            self._reply(f"+OK {index + 1} {field(self._messages[index])}")
            return None
        count, octets = self._totals()
        rows = [
            f"{i + 1} {field(m)}" for i, m in enumerate(self._messages) if i not in self._deleted
        ]
        self._multiline(f"+OK {count} messages ({octets} octets)", rows)
        return None

    def _do_retr(self, arg: str | None) -> Event | None:
        (number,) = self._args(arg, "RETR message", 1, 1)
        index = self._live(number)
        self._read.add(index)
        self._reply(f"+OK {self._messages[index].size} octets")
        return SendMessage(index, None)

    def _do_top(self, arg: str | None) -> Event | None:
        number, lines = self._args(arg, "TOP message lines", 2, 2)
        index = self._live(number)
        if not (lines.isascii() and lines.isdigit()):
            raise _Reply("-ERR Syntax: TOP message lines")
        self._reply("+OK Top of message follows")
        return SendMessage(index, int(lines))

    def _do_dele(self, arg: str | None) -> Event | None:
        (number,) = self._args(arg, "DELE message", 1, 1)
        index = self._live(number)
        self._deleted.add(index)
        self._reply(f"+OK Message {index + 1} deleted")
        return None

    def _do_noop(self, arg: str | None) -> Event | None:
        self._args(arg, "NOOP", 0, 0)
        self._reply("+OK")
        return None

    def _do_rset(self, arg: str | None) -> Event | None:
        self._args(arg, "RSET", 0, 0)
        self._deleted.clear()
        self._read.clear()
        count, octets = self._totals()
        self._reply(f"+OK Maildrop has {count} messages ({octets} octets)")
        return None
