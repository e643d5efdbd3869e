"""LIST (with LIST-EXTENDED, LIST-STATUS, SPECIAL-USE), LSUB and STATUS.

LIST-EXTENDED (RFC 5258) selection options: SUBSCRIBED, RECURSIVEMATCH, SPECIAL-USE,
REMOTE (nothing is remote here); return options: SUBSCRIBED, CHILDREN, SPECIAL-USE and
STATUS (RFC 5819), which adds a STATUS reply after each selectable folder listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from daisymail.imap.common import CommandFailed
from daisymail.imap.events import Execute
from daisymail.imap.parser import ParseError, Token, astring, atom, token_list
from daisymail.imap.responses import tagged
from daisymail.store.imap_folders import INBOX, SEPARATOR, USE_ATTRIBUTES, FolderError

if TYPE_CHECKING:
    from daisymail.imap.commands import MailSession

STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "SIZE",
        "RECENT",
        "DELETED",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
    }
)
SELECTION = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURNS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


@dataclass
class ListOptions:
    selection: set[str] = field(default_factory=set)
    returns: set[str] = field(default_factory=set)
    status: list[str] = field(default_factory=list)


def _matcher(reference: str, pattern: str) -> re.Pattern[str]:
    full = reference + pattern
    if full[: len(INBOX)].upper() == INBOX:
        full = INBOX + full[len(INBOX) :]
    regex = "".join(".*" if c == "*" else "[^.]*" if c == "%" else re.escape(c) for c in full)
    return re.compile(regex + r"\Z")


def _attributes(
    session: MailSession, name: str, names: list[str], subs: set[str], opts: ListOptions
) -> list[str]:
    attrs = []
    if name not in names:
        attrs.append("\\NonExistent")
    else:
        children = any(n.startswith(name + SEPARATOR) for n in names)
        attrs.append("\\HasChildren" if children else "\\HasNoChildren")
        attrs += session.folders.special_use(name)
    if name in subs and ("SUBSCRIBED" in opts.selection | opts.returns):
        attrs.append("\\Subscribed")
    return attrs


def list_line(
    session: MailSession,
    name: str,
    kind: str = "LIST",
    attrs: list[str] | None = None,
    extra: bytes = b"",
) -> bytes:
    if attrs is None:
        names = session.folders.names()
        attrs = _attributes(session, name, names, set(), ListOptions())
    head = b'* %s (%s) "." ' % (kind.encode(), " ".join(attrs).encode())
    return head + session.shown(name) + extra + b"\r\n"


def _lines(
    session: MailSession, kind: str, reference: str, patterns: list[str], opts: ListOptions
) -> list[bytes]:
    """The LIST or LSUB lines for every folder one of the patterns matches, once each."""
    if patterns == [""] and kind == "LIST" and not opts.selection:
        return [b'* LIST (\\Noselect) "." ""\r\n']
    matchers = [_matcher(reference, p) for p in patterns if p]

    def matches(name: str) -> bool:
        shown = session.shown_text(name)
        return any(m.match(shown) for m in matchers)

    names = session.folders.names()
    subs = session.folders.subscriptions()
    subscribed = "SUBSCRIBED" in opts.selection or kind == "LSUB"
    candidates = sorted(set(names) | subs) if subscribed else names
    parents = _lsub_parents(matches, subs) if kind == "LSUB" else set()
    if parents:
        candidates = sorted(set(candidates) | parents)
    out = []
    for name in candidates:
        if name in parents:
            out.append(list_line(session, name, kind, ["\\Noselect"]))
            continue
        selected = True
        if subscribed and name not in subs:
            selected = False
        if "SPECIAL-USE" in opts.selection and not session.folders.special_use(name):
            selected = False
        extra = b""
        if not selected and "RECURSIVEMATCH" in opts.selection and "SUBSCRIBED" in opts.selection:
            # RFC 5258 3.5: only for a subscribed descendant the patterns do not list
            below = [n for n in candidates if n.startswith(name + SEPARATOR)]
            if any(n in subs and not matches(n) for n in below):
                extra = b' ("CHILDINFO" ("SUBSCRIBED"))'
        if not (selected or extra) or not matches(name):
            continue
        attrs = _attributes(session, name, names, subs, opts)
        if kind == "LSUB":
            attrs = [a for a in attrs if a != "\\Subscribed"]
        out.append(list_line(session, name, kind, attrs, extra))
        if opts.status and name in names:
            try:
                out.append(status_line(session, name, opts.status))
            except (CommandFailed, FolderError, FileNotFoundError):
                pass
    return out


def _lsub_parents(matches: Callable[[str], bool], subs: set[str]) -> set[str]:
    """RFC 3501 6.3.9: when ``%`` stops above a subscribed folder, LSUB names its parent
    that the pattern matches, not subscribed itself, with \\Noselect."""
    out = set()
    for sub in subs:
        if matches(sub):
            continue
        parts = sub.split(SEPARATOR)
        for i in range(1, len(parts)):
            parent = SEPARATOR.join(parts[:i])
            if parent not in subs and matches(parent):
                out.add(parent)
    return out


def _parse_list(args: list[Token]) -> tuple[ListOptions, list[Token]]:
    opts = ListOptions()
    if args and isinstance(args[0], list):
        opts.selection = {atom(o).upper() for o in token_list(args.pop(0))}
        if not opts.selection <= SELECTION:
            raise ParseError("unknown LIST selection option")
        if opts.selection == {"RECURSIVEMATCH"} or opts.selection == {"RECURSIVEMATCH", "REMOTE"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")
    if len(args) == 4 and isinstance(args[2], str) and args[2].upper() == "RETURN":
        returns = token_list(args[3])
        i = 0
        while i < len(returns):
            word = atom(returns[i]).upper()
            if word not in RETURNS:
                raise ParseError("unknown LIST return option")
            if word == "STATUS":
                if i + 1 >= len(returns):
                    raise ParseError("STATUS needs a list of items")
                i += 1
                opts.status = _status_items(returns[i])
            opts.returns.add(word)
            i += 1
        args = args[:2]
    if len(args) != 2:
        raise ParseError("LIST needs a reference and a pattern")
    return opts, args


def cmd_list(session: MailSession, ev: Execute) -> bytes:
    opts, args = _parse_list(list(ev.args))
    reference = astring(args[0])
    patterns = args[1] if isinstance(args[1], list) else [args[1]]
    body = _lines(session, "LIST", reference, [astring(p) for p in patterns], opts)
    return b"".join(body) + tagged(ev.tag, "OK", "LIST completed")


def cmd_lsub(session: MailSession, ev: Execute) -> bytes:
    if len(ev.args) != 2:
        raise ParseError("LSUB needs a reference and a pattern")
    reference, pattern = (astring(a) for a in ev.args)
    if not pattern:
        return b'* LSUB (\\Noselect) "." ""\r\n' + tagged(ev.tag, "OK", "LSUB completed")
    body = _lines(session, "LSUB", reference, [pattern], ListOptions())
    return b"".join(body) + tagged(ev.tag, "OK", "LSUB completed")


def _status_items(tok: Token) -> list[str]:
    items = [atom(i).upper() for i in token_list(tok)]
    if not items or any(i not in STATUS_ITEMS for i in items):
        raise ParseError("unknown STATUS item")
    return items


def status_line(session: MailSession, name: str, items: list[str]) -> bytes:
    try:
        snap = session.folders.folder(name).sync()
    except FolderError as e:
        raise CommandFailed(str(e), "NONEXISTENT") from None
    if "HIGHESTMODSEQ" in items:
        session.enable_condstore()
    values = {
        "MESSAGES": len(snap.messages),
        "UIDNEXT": snap.uidnext,
        "UIDVALIDITY": snap.uidvalidity,
        "UNSEEN": sum(1 for m in snap.messages if "\\Seen" not in m.flags),
        "RECENT": len(snap.recent),  # not seen by any session yet
        "DELETED": sum(1 for m in snap.messages if "\\Deleted" in m.flags),
        "HIGHESTMODSEQ": snap.highestmodseq,
        "APPENDLIMIT": session.append_limit,
    }
    if "SIZE" in items:
        values["SIZE"] = sum(m.size for m in snap.messages)
    pairs = " ".join(f"{i} {values[i]}" for i in items)
    return b"* STATUS " + session.shown(name) + f" ({pairs})\r\n".encode()


def cmd_status(session: MailSession, ev: Execute) -> bytes:
    if len(ev.args) != 2:
        raise ParseError("STATUS needs a folder name and items")
    name = session.mailbox(ev.args[0])
    line = status_line(session, name, _status_items(ev.args[1]))
    news = session.view.refresh(True) if session.view is not None else b""
    return news + line + tagged(ev.tag, "OK", "STATUS completed")


def create_uses(tok: Token) -> list[str]:
    """CREATE-SPECIAL-USE (RFC 6154): ``(USE (\\Sent))``; attributes we cannot give
    (\\All, \\Flagged: virtual folders) are refused with [USEATTR]."""
    params = token_list(tok)
    if len(params) != 2 or atom(params[0]).upper() != "USE":
        raise ParseError("unknown CREATE parameter")
    uses = []
    for a in token_list(params[1]):
        attr = atom(a)
        known = {u.upper(): u for u in USE_ATTRIBUTES}
        if attr.upper() not in known:
            raise CommandFailed(f"cannot make a {attr[:20]} folder", "USEATTR")
        uses.append(known[attr.upper()])
    return uses
