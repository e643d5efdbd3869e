"""Message commands on the selected folder: FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE.

Each returns the whole reply (untagged data, news of other sessions' changes, tagged
status). The UID forms differ only in reading UID sets and adding UIDs to the replies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from daisymail.imap import esearch, fetch, qresync, stream
from daisymail.imap.parser import (
    ParseError,
    Token,
    atom,
    mod_sequence,
    sequence_set,
    token_list,
)
from daisymail.imap.protocol import Execute
from daisymail.imap.responses import tagged
from daisymail.imap.search import Target, parse_search
from daisymail.imap.selected import SelectedView
from daisymail.store.imap_folders import FolderSnapshot, Message

if TYPE_CHECKING:
    from daisymail.imap.commands import MailSession

MAX_KEYWORD = 100
_SYSTEM = {"\\ANSWERED", "\\FLAGGED", "\\DELETED", "\\SEEN", "\\DRAFT"}


def parse_flags(tokens: list[Token]) -> frozenset[str]:
    out = set()
    for tok in tokens:
        flag = atom(tok)
        if flag.startswith("\\"):
            if flag.upper() not in _SYSTEM:
                raise ParseError(f"unknown flag {flag[:30]}")
            flag = "\\" + flag[1:].capitalize()
        elif len(flag) > MAX_KEYWORD or any(c in flag for c in "*%]"):
            raise ParseError("bad keyword")
        out.add(flag)
    return frozenset(out)


def _view(session: MailSession) -> SelectedView:
    if session.view is None:
        raise ParseError("no folder selected")
    return session.view


def _tail(
    session: MailSession, ev: Execute, allow_expunge: bool, text: str, code: str = ""
) -> bytes:
    news = _view(session).refresh(allow_expunge)
    return news + tagged(ev.tag, "OK", text, code)


def cmd_fetch(session: MailSession, ev: Execute) -> stream.Output:
    if len(ev.args) not in (2, 3):
        raise ParseError("FETCH needs a set and items")
    view = _view(session)
    which = sequence_set(ev.args[0])
    items = fetch.parse_items(ev.args[1])
    changed_since, vanished = None, False
    if len(ev.args) == 3:
        changed_since, vanished = qresync.fetch_modifiers(session, ev.args[2], ev.uid)
    if changed_since is not None and not any(i.name == "MODSEQ" for i in items):
        items.append(fetch.Item("MODSEQ", label="MODSEQ"))
    if any(i.name == "MODSEQ" for i in items):
        session.enable_condstore()
    if ev.uid and not any(i.name == "UID" for i in items):
        items.insert(0, fetch.Item("UID", label="UID"))
    chosen = view.select(which, ev.uid)
    out: list[bytes] = []
    if not view.readonly and any(i.sets_seen for i in items):
        unseen = [m.uid for _, m in chosen if "\\Seen" not in m.flags]
        if unseen:
            _own_change(view, view.folder.store_flags(unseen, "+", frozenset({"\\Seen"})), unseen)
            out.append(view.refresh(False))  # others' news; ours is in the FETCH below
            chosen = view.select(which, ev.uid)
            if not any(i.name == "FLAGS" for i in items):
                items.append(fetch.Item("FLAGS", label="FLAGS"))
    if changed_since is not None:
        chosen = [(seq, m) for seq, m in chosen if m.modseq > changed_since]
    if vanished and changed_since is not None:
        out.insert(0, qresync.vanished_earlier(view.folder.sync(), changed_since, which))
    lines = _fetch_lines(session, ev, view, chosen, items)
    if stream.lazy_worthy(items, [m for _, m in chosen]):
        return stream.Lazy(ev.tag, [*out], lines)  # one message in memory at a time
    return stream.join([*out, *(seg for line in lines for seg in line)])


def _fetch_lines(
    session: MailSession,
    ev: Execute,
    view: SelectedView,
    chosen: list[tuple[int, Message]],
    items: list[fetch.Item],
) -> Iterator[list[stream.Segment]]:
    """The FETCH reply, one message's line at a time, then the tagged status."""
    for seq, msg in chosen:
        try:
            parts = _render(view, msg, items)
        except FileNotFoundError:
            continue  # expunged by another session meanwhile; announced later
        if any(i.name == "FLAGS" for i in items):
            view.tell(msg.uid, msg.flags)
        line: list[stream.Segment] = [b"* %d FETCH (" % seq]
        for n, part in enumerate(parts):
            line.extend([b" ", *part] if n else part)
        line.append(b")\r\n")
        yield line
    yield [_tail(session, ev, ev.uid, "FETCH completed")]


def _modifier(tok: Token, name: str) -> int:
    """``(CHANGEDSINCE n)`` or ``(UNCHANGEDSINCE n)``: CONDSTORE's only modifiers here."""
    mods = token_list(tok)
    if len(mods) != 2 or atom(mods[0]).upper() != name:
        raise ParseError(f"unknown modifier, expected ({name} mod-sequence)")
    return mod_sequence(mods[1])


def _own_change(view: SelectedView, snap: FolderSnapshot, uids: list[int]) -> None:
    """Record flags this session just set, so that the refresh after it reports only
    what other sessions changed (and .SILENT stays silent)."""
    after = {m.uid: m for m in snap.messages}
    for uid in uids:
        if uid in after:
            view.tell(uid, after[uid].flags)


def _render(
    view: SelectedView, msg: Message, items: list[fetch.Item]
) -> list[list[stream.Segment]]:
    """The items of one message; a file renamed meanwhile (another reader set flags,
    POP3 added its size field) is looked up again once."""
    try:
        loaded = fetch.Loaded(msg)
        return [stream.render(item, msg, loaded) for item in items]
    except FileNotFoundError:
        fresh = {m.uid: m for m in view.folder.sync().messages}.get(msg.uid)
        if fresh is None:
            raise
        view.remember(fresh)
        loaded = fetch.Loaded(fresh)
        return [stream.render(item, fresh, loaded) for item in items]


def cmd_store(session: MailSession, ev: Execute) -> bytes:
    args = list(ev.args)
    unchanged_since = None
    if len(args) >= 2 and isinstance(args[1], list):
        unchanged_since = _modifier(args.pop(1), "UNCHANGEDSINCE")
        session.enable_condstore()
    if len(args) < 3:
        raise ParseError("STORE needs a set, an item and flags")
    view = _view(session)
    which = sequence_set(args[0])
    item = atom(args[1]).upper()
    silent = item.endswith(".SILENT")
    item = item.removesuffix(".SILENT")
    modes = {"FLAGS": "=", "+FLAGS": "+", "-FLAGS": "-"}
    if item not in modes:
        raise ParseError("STORE item must be FLAGS, +FLAGS or -FLAGS")
    raw = args[2] if len(args) == 3 and isinstance(args[2], list) else args[2:]
    flags = parse_flags(raw)
    if view.readonly:
        return view.refresh(False) + tagged(ev.tag, "NO", "the folder is read-only")
    chosen = view.select(which, ev.uid)
    uids = [m.uid for _, m in chosen]
    failed: list[int] = []
    snap = view.folder.store_flags(
        uids, modes[item], flags, unchanged_since=unchanged_since, failed=failed
    )
    _own_change(view, snap, uids)
    out = [view.refresh(False)]  # sequence numbers below stay valid: no EXPUNGE here
    if not silent:
        for seq, msg in chosen:
            now = view.message(msg.uid)
            if now is None or msg.uid in failed:
                continue
            out.append(b"* %d FETCH (%s)\r\n" % (seq, view.flags_data(now, uid=ev.uid)))
    elif view.condstore:  # RFC 7162 3.1.3: .SILENT still tells the new MODSEQs
        for seq, msg in chosen:
            now = view.message(msg.uid)
            if now is not None and now.modseq != msg.modseq:
                uid = b"UID %d " % now.uid if ev.uid else b""
                out.append(b"* %d FETCH (%sMODSEQ (%d))\r\n" % (seq, uid, now.modseq))
    code = ""
    if failed:
        numbers = failed if ev.uid else [seq for seq, m in chosen if m.uid in failed]
        code = "MODIFIED " + ",".join(str(n) for n in numbers)
    return b"".join(out) + tagged(ev.tag, "OK", "STORE completed", code)


def cmd_search(session: MailSession, ev: Execute) -> bytes:
    view = _view(session)
    ret, args = esearch.parse_return(list(ev.args), session.rev2)
    predicate, modseq = parse_search(args)
    if modseq:
        session.enable_condstore()
    largest_seq = len(view.uids)
    largest_uid = view.uids[-1] if view.uids else 0
    hits: list[int] = []
    uids: list[int] = []
    modseqs: dict[int, int] = {}  # hit: its MODSEQ
    for seq, uid in enumerate(view.uids, 1):
        msg = view.message(uid)
        if msg is None:
            continue
        target = Target(seq, largest_seq, largest_uid, fetch.Loaded(msg))
        try:
            if predicate(target):
                hits.append(uid if ev.uid else seq)
                uids.append(uid)
                modseqs[hits[-1]] = msg.modseq
        except FileNotFoundError:
            continue
    esearch.save(view, ret, uids)
    line = esearch.reply(ev.tag, ev.uid, ret, hits, modseqs if modseq else None)
    return line + _tail(session, ev, ev.uid, "SEARCH completed")


def _copy(session: MailSession, ev: Execute) -> tuple[SelectedView, list[Message], str, list[int]]:
    if len(ev.args) != 2:
        raise ParseError(f"{ev.name} needs a set and a folder name")
    from daisymail.imap.commands import CommandFailed

    view = _view(session)
    which = sequence_set(ev.args[0])
    name = session.mailbox(ev.args[1])
    if not session.folders.exists(name):
        raise CommandFailed("no such folder", "TRYCREATE")
    dest = session.folders.folder(name)
    chosen = [m for _, m in view.select(which, ev.uid)]
    if ev.name == "COPY":  # a MOVE within the account takes no more room
        session.check_quota(name, sum(m.size for m in chosen))
    try:
        new_uids = dest.add_files([(m.path, m.flags) for m in chosen])
    except FileNotFoundError:  # a file renamed or removed since the last look: look again
        current = {m.uid: m for m in view.folder.sync().messages}
        chosen = [current[m.uid] for m in chosen if m.uid in current]
        new_uids = dest.add_files([(m.path, m.flags) for m in chosen])
    validity = dest.sync().uidvalidity
    code = ""
    if chosen:
        src = ",".join(str(m.uid) for m in chosen)
        dst = ",".join(str(u) for u in new_uids)
        code = f"COPYUID {validity} {src} {dst}"
    return view, chosen, code, new_uids


def cmd_copy(session: MailSession, ev: Execute) -> bytes:
    code = _copy(session, ev)[2]
    return _tail(session, ev, True, "COPY completed", code)


def cmd_move(session: MailSession, ev: Execute) -> bytes:
    view = _view(session)
    if view.readonly:
        return view.refresh(False) + tagged(ev.tag, "NO", "the folder is read-only")
    view, chosen, code, _ = _copy(session, ev)
    view.folder.expunge([m.uid for m in chosen])
    head = f"* OK [{code}] moved\r\n".encode() if code else b""
    return head + _tail(session, ev, True, "MOVE completed")


def cmd_expunge(session: MailSession, ev: Execute) -> bytes:
    view = _view(session)
    if view.readonly:
        return view.refresh(False) + tagged(ev.tag, "NO", "the folder is read-only")
    snap = view.folder.sync()
    doomed = {m.uid for m in snap.messages if "\\Deleted" in m.flags}
    if ev.uid:
        if len(ev.args) != 1:
            raise ParseError("UID EXPUNGE needs a UID set")
        which = sequence_set(ev.args[0])
        largest = snap.messages[-1].uid if snap.messages else 0
        doomed = {u for u in doomed if which.contains(u, largest)}
    elif ev.args:
        raise ParseError("EXPUNGE takes no arguments")
    view.folder.expunge(doomed)
    news = view.refresh(True)
    code = f"HIGHESTMODSEQ {view.folder.sync().highestmodseq}" if session.condstore else ""
    return news + tagged(ev.tag, "OK", "EXPUNGE completed", code)
