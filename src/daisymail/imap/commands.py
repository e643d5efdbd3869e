"""The commands that touch mailboxes, run synchronously in a worker thread.

MailSession belongs to one logged-in IMAP session: it holds the account's folders and
the selected view, and turns an Execute event into reply bytes. Folder commands are
here; message commands (FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE) in messages.py.
"""

from __future__ import annotations

import re

from daisymail.imap import append, messages
from daisymail.imap.common import CommandFailed, Result, mailbox_name
from daisymail.imap.parser import ParseError, astring, atom, token_list
from daisymail.imap.protocol import Execute
from daisymail.imap.responses import flag_list, string, tagged, untagged
from daisymail.imap.selected import SelectedView
from daisymail.imap.stream import Output
from daisymail.store.base import StorageError
from daisymail.store.imap_folders import (
    INBOX,
    SEPARATOR,
    SPECIAL_USE,
    AccountFolders,
    FolderError,
)

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
STATUS_ITEMS = frozenset(
    {"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "RECENT", "DELETED", "HIGHESTMODSEQ"}
)

__all__ = ["CommandFailed", "MailSession", "Result", "mailbox_name"]


class MailSession:
    def __init__(self, folders: AccountFolders, append_limit: int) -> None:
        self.folders = folders
        self.append_limit = append_limit
        self.view: SelectedView | None = None
        self.condstore = False  # RFC 7162: MODSEQ in flag updates once a client asked

    def enable_condstore(self) -> None:
        self.condstore = True
        if self.view is not None:
            self.view.condstore = True

    def run(self, ev: Execute) -> Result:
        handler = getattr(self, "cmd_" + ev.name.lower(), None)
        if handler is None:
            handler = getattr(messages, "cmd_" + ev.name.lower(), None)
            if handler is None:
                raise ParseError(f"{ev.name} is not supported")
            try:
                out: Output = handler(self, ev)
            except CommandFailed as e:
                return self._news(ev) + tagged(ev.tag, "NO", str(e), e.code), None
            return out, None
        try:
            result: Result = handler(ev)
        except CommandFailed as e:
            return tagged(ev.tag, "NO", str(e), e.code), None
        except FolderError as e:
            return tagged(ev.tag, "NO", str(e)), None
        return result

    def run_safely(self, ev: Execute) -> Result:
        """run(), with syntax errors as BAD and storage trouble as a temporary NO."""
        try:
            return self.run(ev)
        except ParseError as e:
            return tagged(ev.tag, "BAD", str(e)), None
        except (OSError, StorageError) as e:
            return tagged(ev.tag, "NO", f"storage error: {e}", "SERVERBUG"), None

    def _news(self, ev: Execute, allow_expunge: bool = True) -> bytes:
        if self.view is None:
            return b""
        return self.view.refresh(allow_expunge)

    def idle_news_now(self) -> bytes:
        """News at the start of an IDLE, looked for even when nothing seems changed."""
        return b"" if self.view is None else self.view.refresh(True)

    def idle_news(self) -> bytes:
        if self.view is None or not self.view.changed():
            return b""
        return self.view.refresh(True)

    # -- simple ---------------------------------------------------------------------------
    def cmd_noop(self, ev: Execute) -> Result:
        return self._news(ev) + tagged(ev.tag, "OK", "NOOP completed"), None

    def cmd_enable(self, ev: Execute) -> Result:
        if not ev.args:
            raise ParseError("ENABLE needs a capability")
        names = [atom(a).upper() for a in ev.args]
        enabled = ""
        if "CONDSTORE" in names:
            self.enable_condstore()
            enabled = " CONDSTORE"
        return untagged("ENABLED" + enabled) + tagged(ev.tag, "OK", "ENABLE completed"), None

    def cmd_check(self, ev: Execute) -> Result:
        """RFC 3501 CHECK: every change is durable when answered already, so a NOOP."""
        return self._news(ev) + tagged(ev.tag, "OK", "CHECK completed"), None

    def cmd_idle(self, ev: Execute) -> Result:
        return self._news(ev), None

    # -- folders --------------------------------------------------------------------------
    def cmd_select(self, ev: Execute, readonly: bool = False) -> Result:
        if len(ev.args) not in (1, 2):
            raise ParseError(f"{ev.name} needs a folder name")
        if len(ev.args) == 2:
            params = [atom(p).upper() for p in token_list(ev.args[1])]
            if params != ["CONDSTORE"]:
                raise ParseError(f"unknown {ev.name} parameter")
            self.condstore = True
        name = mailbox_name(ev.args[0])
        self.view = None
        try:
            folder = self.folders.folder(name)
        except FolderError as e:
            return tagged(ev.tag, "NO", str(e), "NONEXISTENT"), False
        snap = folder.sync()
        view = SelectedView(folder, readonly, snap)
        view.fingerprint = folder.fingerprint()
        view.condstore = self.condstore
        self.view = view
        keywords = {f for m in snap.messages for f in m.flags if not f.startswith("\\")}
        flags = flag_list([*SYSTEM_FLAGS, *keywords])
        permanent = b"()" if readonly else flag_list([*SYSTEM_FLAGS, *keywords, "\\*"])
        unseen = next((i for i, m in enumerate(snap.messages, 1) if "\\Seen" not in m.flags), 0)
        out = [
            b"* FLAGS " + flags + b"\r\n",
            b"* OK [PERMANENTFLAGS " + permanent + b"] flags allowed\r\n",
            b"* %d EXISTS\r\n" % len(snap.messages),
            b"* 0 RECENT\r\n",
        ]
        if unseen:
            out.append(b"* OK [UNSEEN %d] first unseen\r\n" % unseen)
        out.append(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % snap.uidvalidity)
        out.append(b"* OK [UIDNEXT %d] predicted next UID\r\n" % snap.uidnext)
        out.append(b"* OK [HIGHESTMODSEQ %d] highest\r\n" % snap.highestmodseq)
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        out.append(tagged(ev.tag, "OK", f"{ev.name} completed", mode))
        return b"".join(out), True

    def cmd_examine(self, ev: Execute) -> Result:
        return self.cmd_select(ev, readonly=True)

    def cmd_close(self, ev: Execute) -> Result:
        view, self.view = self.view, None
        if view is not None and not view.readonly:
            snap = view.folder.sync()
            view.folder.expunge([m.uid for m in snap.messages if "\\Deleted" in m.flags])
        return tagged(ev.tag, "OK", "CLOSE completed"), False

    def cmd_unselect(self, ev: Execute) -> Result:
        self.view = None
        return tagged(ev.tag, "OK", "UNSELECT completed"), False

    def cmd_create(self, ev: Execute) -> Result:
        if len(ev.args) != 1:
            raise ParseError("CREATE needs a folder name")
        self.folders.create(mailbox_name(ev.args[0]))
        return self._news(ev) + tagged(ev.tag, "OK", "CREATE completed"), None

    def cmd_delete(self, ev: Execute) -> Result:
        if len(ev.args) != 1:
            raise ParseError("DELETE needs a folder name")
        name = mailbox_name(ev.args[0])
        if self.view is not None and self.view.folder.name == name:
            raise CommandFailed("the folder is selected")
        self.folders.delete(name)
        return self._news(ev) + tagged(ev.tag, "OK", "DELETE completed"), None

    def cmd_rename(self, ev: Execute) -> Result:
        if len(ev.args) != 2:
            raise ParseError("RENAME needs two folder names")
        old, new = (mailbox_name(a) for a in ev.args)
        self.folders.rename(old, new)
        return self._news(ev) + tagged(ev.tag, "OK", "RENAME completed"), None

    def cmd_subscribe(self, ev: Execute, on: bool = True) -> Result:
        if len(ev.args) != 1:
            raise ParseError(f"{ev.name} needs a folder name")
        self.folders.subscribe(mailbox_name(ev.args[0]), on)
        return tagged(ev.tag, "OK", f"{ev.name} completed"), None

    def cmd_unsubscribe(self, ev: Execute) -> Result:
        return self.cmd_subscribe(ev, on=False)

    def _list_lines(self, kind: str, reference: str, pattern: str, subscribed_only: bool) -> bytes:
        if not pattern:
            return b'* %s (\\Noselect) "." ""\r\n' % kind.encode()
        full = reference + pattern
        if full[: len(INBOX)].upper() == INBOX:
            full = INBOX + full[len(INBOX) :]
        regex = "".join(".*" if c == "*" else "[^.]*" if c == "%" else re.escape(c) for c in full)
        matcher = re.compile(regex + r"\Z")
        names = self.folders.names()
        subs = self.folders.subscriptions()
        out = []
        for name in names:
            if not matcher.match(name):
                continue
            if subscribed_only and name not in subs:
                continue
            attrs = []
            children = any(n.startswith(name + SEPARATOR) for n in names)
            attrs.append("\\HasChildren" if children else "\\HasNoChildren")
            if name in SPECIAL_USE:
                attrs.append(SPECIAL_USE[name])
            if kind == "LIST" and subscribed_only:
                attrs.append("\\Subscribed")
            line = b'* %s (%s) "." ' % (kind.encode(), " ".join(attrs).encode())
            out.append(line + string(name) + b"\r\n")
        return b"".join(out)

    def cmd_list(self, ev: Execute) -> Result:
        args = list(ev.args)
        subscribed = False
        if args and isinstance(args[0], list):
            options = [atom(o).upper() for o in token_list(args.pop(0))]
            subscribed = "SUBSCRIBED" in options
        if len(args) == 4 and isinstance(args[2], str) and args[2].upper() == "RETURN":
            args = args[:2]
        if len(args) != 2:
            raise ParseError("LIST needs a reference and a pattern")
        reference = astring(args[0])
        patterns = args[1] if isinstance(args[1], list) else [args[1]]
        body = b"".join(
            self._list_lines("LIST", reference, astring(p), subscribed) for p in patterns
        )
        return body + tagged(ev.tag, "OK", "LIST completed"), None

    def cmd_lsub(self, ev: Execute) -> Result:
        if len(ev.args) != 2:
            raise ParseError("LSUB needs a reference and a pattern")
        reference, pattern = (astring(a) for a in ev.args)
        body = self._list_lines("LSUB", reference, pattern, True)
        return body + tagged(ev.tag, "OK", "LSUB completed"), None

    def cmd_status(self, ev: Execute) -> Result:
        if len(ev.args) != 2:
            raise ParseError("STATUS needs a folder name and items")
        name = mailbox_name(ev.args[0])
        items = [atom(i).upper() for i in token_list(ev.args[1])]
        if not items or any(i not in STATUS_ITEMS for i in items):
            raise ParseError("unknown STATUS item")
        try:
            snap = self.folders.folder(name).sync()
        except FolderError as e:
            raise CommandFailed(str(e), "NONEXISTENT") from None
        values = {
            "MESSAGES": len(snap.messages),
            "UIDNEXT": snap.uidnext,
            "UIDVALIDITY": snap.uidvalidity,
            "UNSEEN": sum(1 for m in snap.messages if "\\Seen" not in m.flags),
            "RECENT": 0,
            "DELETED": sum(1 for m in snap.messages if "\\Deleted" in m.flags),
            "HIGHESTMODSEQ": snap.highestmodseq,
        }
        if "SIZE" in items:
            values["SIZE"] = sum(m.size for m in snap.messages)
        pairs = " ".join(f"{i} {values[i]}" for i in items)
        line = b"* STATUS " + string(name) + f" ({pairs})\r\n".encode()
        return self._news(ev) + line + tagged(ev.tag, "OK", "STATUS completed"), None

    def cmd_append(self, ev: Execute) -> Result:
        return append.cmd_append(self, ev.tag, ev.args), None

    def check_quota(self, name: str, size: int) -> None:
        """Raise CommandFailed [OVERQUOTA] when size more octets do not fit."""
