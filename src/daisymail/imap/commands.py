"""The commands that touch mailboxes, run synchronously in a worker thread.

MailSession belongs to one logged-in IMAP session: it holds the account's folders, the
selected view and what the client enabled, and turns an Execute event into a reply.
Session and folder commands are here; LIST and STATUS in listing.py, APPEND in
append.py, message commands (FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE) in messages.py.
"""

from __future__ import annotations

from daisymail.imap import append, esearch, listing, messages, mutf7, qresync, quota
from daisymail.imap.common import CommandFailed, Result, mailbox_name
from daisymail.imap.parser import ParseError, Token, atom, token_list
from daisymail.imap.protocol import Execute
from daisymail.imap.qresync import Resync
from daisymail.imap.quota import Quota
from daisymail.imap.responses import string, tagged, untagged
from daisymail.imap.selected import SelectedView
from daisymail.imap.stream import Output
from daisymail.store.base import StorageError
from daisymail.store.imap_folders import INBOX, AccountFolders, FolderError

# ENABLE-able extensions, by their upper-case name, as the ENABLED reply spells them.
ENABLABLE = {
    "CONDSTORE": "CONDSTORE",
    "QRESYNC": "QRESYNC",
    "IMAP4REV2": "IMAP4rev2",
    "UTF8=ACCEPT": "UTF8=ACCEPT",
}

__all__ = ["CommandFailed", "MailSession", "Result", "mailbox_name"]


class MailSession:
    def __init__(
        self, folders: AccountFolders, append_limit: int, quota: Quota | None = None
    ) -> None:
        self.folders = folders
        self.append_limit = append_limit
        self.quota = quota or Quota(None)
        self.view: SelectedView | None = None
        self.condstore = False  # RFC 7162: MODSEQ in flag updates once a client asked
        self.enabled: set[str] = set()  # upper-case names the client ENABLEd
        self.notice = b""  # untagged lines owed before the next reply

    # -- what the client enabled -------------------------------------------------------
    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def utf8(self) -> bool:
        """Folder names in UTF-8 (IMAP4rev2, UTF8=ACCEPT) rather than modified UTF-7."""
        return self.rev2 or "UTF8=ACCEPT" in self.enabled

    def enable_condstore(self) -> None:
        """RFC 7162 3.1: the first CONDSTORE-enabling command while a folder is selected
        is answered with its HIGHESTMODSEQ too."""
        if not self.condstore and self.view is not None:
            highest = self.view.folder.sync().highestmodseq
            self.notice += b"* OK [HIGHESTMODSEQ %d] CONDSTORE on\r\n" % highest
        self.condstore = True
        if self.view is not None:
            self.view.condstore = True

    def mailbox(self, tok: Token) -> str:
        """A folder name from the client, as it is kept (modified UTF-7)."""
        name = mailbox_name(tok)
        return mutf7.encode(name) if self.utf8 and name != INBOX else name

    def shown_text(self, name: str) -> str:
        """A folder name as the client spells it: UTF-8 or modified UTF-7."""
        return mutf7.decode(name) if self.utf8 else name

    def shown(self, name: str) -> bytes:
        """A folder name as the client expects it (quoted string or literal)."""
        return string(self.shown_text(name), utf8=self.utf8)

    def check_quota(self, name: str, size: int) -> None:
        """Raise CommandFailed [OVERQUOTA] when size more octets do not fit."""
        self.quota.check(self.folders, size)

    # -- running commands --------------------------------------------------------------
    def run(self, ev: Execute) -> Result:
        ev = esearch.substitute(ev, self.view)
        lower = ev.name.lower()
        handler = getattr(self, "cmd_" + lower, None)
        for module in (listing, qresync, quota, messages):
            if handler is None:
                found = getattr(module, "cmd_" + lower, None)
                if found is not None:
                    handler = _bound(found, self)
        if handler is None:
            raise ParseError(f"{ev.name} is not supported")
        self.notice = b""
        try:
            result = handler(ev)
        except CommandFailed as e:
            result = self._news(ev) + tagged(ev.tag, "NO", str(e), e.code)
        except FolderError as e:
            result = tagged(ev.tag, "NO", str(e))
        output, selected = result if isinstance(result, tuple) else (result, None)
        notice, self.notice = self.notice, b""
        if notice and ev.name not in ("SELECT", "EXAMINE"):  # those say HIGHESTMODSEQ
            output = _prepend(notice, output)
        return output, selected

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
        """RFC 5161; the ENABLED reply names what this command newly turned on."""
        if not ev.args:
            raise ParseError("ENABLE needs a capability")
        names = [atom(a).upper() for a in ev.args]
        newly = []
        for name in names:
            if name in ENABLABLE and name not in self.enabled:
                self.enabled.add(name)
                newly.append(ENABLABLE[name])
        if self.qresync or "CONDSTORE" in self.enabled:
            self.enable_condstore()
        if self.qresync and self.view is not None:
            self.view.qresync = True
        if self.rev2 and self.view is not None:
            self.view.hide_recent()
        line = untagged(" ".join(["ENABLED", *newly]))
        return line + tagged(ev.tag, "OK", "ENABLE completed"), None

    def cmd_check(self, ev: Execute) -> Result:
        """RFC 3501 CHECK: every change is durable when answered already, so a NOOP."""
        return self._news(ev) + tagged(ev.tag, "OK", "CHECK completed"), None

    def cmd_idle(self, ev: Execute) -> Result:
        return self._news(ev), None

    # -- selecting ------------------------------------------------------------------------
    def cmd_select(self, ev: Execute, readonly: bool = False) -> Result:
        if len(ev.args) not in (1, 2):
            raise ParseError(f"{ev.name} needs a folder name")
        resync = None
        if len(ev.args) == 2:
            resync = self._select_params(ev.name, token_list(ev.args[1]))
        name = self.mailbox(ev.args[0])
        closed = b""
        if self.view is not None and (self.rev2 or self.qresync):
            closed = b"* OK [CLOSED] previous folder closed\r\n"
        self.view = None
        try:
            folder = self.folders.folder(name)
        except FolderError as e:
            return closed + tagged(ev.tag, "NO", str(e), "NONEXISTENT"), False
        # The folder's shared snapshot; a read-write SELECT takes the messages no session
        # has seen yet (\Recent here), writing the folder state only when there are any.
        view = SelectedView.open(folder, readonly, show_recent=not self.rev2)
        snap = view.shared.snap
        view.condstore = self.condstore
        view.qresync = self.qresync
        self.view = view
        out = [closed, b"* %d EXISTS\r\n" % len(snap.messages)]
        if not self.rev2:  # IMAP4rev2 has no \Recent, and no UNSEEN code
            out.append(b"* %d RECENT\r\n" % view.recent_count())
            unseen = next((i for i, m in enumerate(snap.messages, 1) if "\\Seen" not in m.flags), 0)
            if unseen:
                out.append(b"* OK [UNSEEN %d] first unseen\r\n" % unseen)
        out.append(view.flags_lines())
        if self.rev2:
            out.append(listing.list_line(self, name))
        out.append(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % snap.uidvalidity)
        out.append(b"* OK [UIDNEXT %d] predicted next UID\r\n" % snap.uidnext)
        out.append(b"* OK [HIGHESTMODSEQ %d] highest\r\n" % snap.highestmodseq)
        if resync is not None:
            out.append(qresync.select_news(view, snap, resync))
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        out.append(tagged(ev.tag, "OK", f"{ev.name} completed", mode))
        return b"".join(out), True

    def _select_params(self, command: str, params: list[Token]) -> Resync | None:
        """``(CONDSTORE)`` and ``(QRESYNC (uidvalidity modseq [uids [seq-match]]))``."""
        resync = None
        i = 0
        while i < len(params):
            word = atom(params[i]).upper()
            if word == "CONDSTORE":
                self.enable_condstore()
            elif word == "QRESYNC" and i + 1 < len(params):
                if not self.qresync:
                    raise ParseError("QRESYNC is not enabled")
                i += 1
                resync = qresync.parse_resync(token_list(params[i]))
            else:
                raise ParseError(f"unknown {command} parameter")
            i += 1
        return resync

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

    # -- folders --------------------------------------------------------------------------
    def cmd_create(self, ev: Execute) -> Result:
        if len(ev.args) not in (1, 2):
            raise ParseError("CREATE needs a folder name")
        uses = listing.create_uses(ev.args[1]) if len(ev.args) == 2 else []
        name = self.mailbox(ev.args[0])
        self.folders.create(name)
        if uses:
            self.folders.set_special_use(name, uses)
        return self._news(ev) + tagged(ev.tag, "OK", "CREATE completed"), None

    def cmd_delete(self, ev: Execute) -> Result:
        if len(ev.args) != 1:
            raise ParseError("DELETE needs a folder name")
        name = self.mailbox(ev.args[0])
        if self.view is not None and self.view.folder.name == name:
            raise CommandFailed("the folder is selected")
        self.folders.delete(name)
        return self._news(ev) + tagged(ev.tag, "OK", "DELETE completed"), None

    def cmd_rename(self, ev: Execute) -> Result:
        if len(ev.args) != 2:
            raise ParseError("RENAME needs two folder names")
        old, new = (self.mailbox(a) for a in ev.args)
        self.folders.rename(old, new)
        return self._news(ev) + tagged(ev.tag, "OK", "RENAME completed"), None

    def cmd_subscribe(self, ev: Execute, on: bool = True) -> Result:
        if len(ev.args) != 1:
            raise ParseError(f"{ev.name} needs a folder name")
        self.folders.subscribe(self.mailbox(ev.args[0]), on)
        return tagged(ev.tag, "OK", f"{ev.name} completed"), None

    def cmd_unsubscribe(self, ev: Execute) -> Result:
        return self.cmd_subscribe(ev, on=False)

    def cmd_append(self, ev: Execute) -> Result:
        return append.cmd_append(self, ev.tag, ev.args), None


def _prepend(head: bytes, output: Output) -> Output:
    if isinstance(output, bytes):
        return head + output
    if isinstance(output, list):
        return [head, *output]
    output.head = head + output.head
    return output


def _bound(func: object, session: MailSession) -> object:
    """A module's ``cmd_x(session, ev)`` as a handler taking ev."""

    def call(ev: Execute) -> Output | Result:
        return func(session, ev)  # type: ignore[operator, no-any-return]

    return call
