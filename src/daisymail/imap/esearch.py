"""ESEARCH (RFC 4731), SEARCHRES (RFC 5182) and IMAP4rev2 SEARCH results.

``SEARCH RETURN (MIN MAX COUNT ALL SAVE)`` answers with one ``* ESEARCH`` line instead
of the list of every match, and SAVE keeps the matches for ``$`` in later commands.
An IMAP4rev2 client always gets ESEARCH. ``$`` is replaced by the saved messages still
in the folder before a command runs, as UIDs or sequence numbers as the command needs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from daisymail.imap.events import Execute
from daisymail.imap.parser import EMPTY_SET, ParseError, Token, atom, token_list
from daisymail.imap.responses import number_set, string
from daisymail.imap.selected import SelectedView

OPTIONS = frozenset({"MIN", "MAX", "COUNT", "ALL", "SAVE"})
SET_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE"})


@dataclass(frozen=True)
class Return:
    options: frozenset[str]
    extended: bool  # answer with ESEARCH (RETURN given, or IMAP4rev2)


def parse_return(args: list[Token], rev2: bool) -> tuple[Return, list[Token]]:
    """The RETURN options in front of the search keys, and the keys."""
    if args and isinstance(args[0], str) and args[0].upper() == "RETURN":
        if len(args) < 2:
            raise ParseError("RETURN needs a list of options")
        options = {atom(o).upper() for o in token_list(args[1])}
        if not options <= OPTIONS:
            raise ParseError("unknown SEARCH RETURN option")
        return Return(frozenset(options or {"ALL"}), True), args[2:]
    return Return(frozenset({"ALL"}), rev2), args


def reply(
    tag: str, uid: bool, ret: Return, hits: list[int], modseqs: dict[int, int] | None
) -> bytes:
    """The untagged SEARCH or ESEARCH line (none for SAVE alone); hits in order.

    modseqs (a MODSEQ search): each hit's MODSEQ. The reply carries the highest of the
    messages it reports: all of them, or only the MIN and MAX ones when those are all
    it returns (RFC 7162 3.1.5)."""
    modseq = None
    if modseqs is not None and hits:
        shown = hits
        if ret.extended and not ret.options & {"ALL", "COUNT"}:
            shown = [n for n, o in ((min(hits), "MIN"), (max(hits), "MAX")) if o in ret.options]
        modseq = max((modseqs[n] for n in shown), default=max(modseqs.values()))
    if not ret.extended:
        line = b"* SEARCH" + b"".join(b" %d" % n for n in hits)
        if modseq is not None and hits:
            line += b" (MODSEQ %d)" % modseq
        return line + b"\r\n"
    if ret.options == {"SAVE"}:
        return b""
    parts = [b"* ESEARCH (TAG " + string(tag) + b")"]
    if uid:
        parts.append(b"UID")
    if hits:
        if "MIN" in ret.options:
            parts.append(b"MIN %d" % min(hits))
        if "MAX" in ret.options:
            parts.append(b"MAX %d" % max(hits))
        if "ALL" in ret.options:
            parts.append(b"ALL " + number_set(hits).encode())
    if "COUNT" in ret.options:
        parts.append(b"COUNT %d" % len(hits))
    if modseq is not None and hits:
        parts.append(b"MODSEQ %d" % modseq)
    return b" ".join(parts) + b"\r\n"


def save(view: SelectedView, ret: Return, uids: list[int]) -> None:
    """SEARCHRES: remember the matches (by UID) when SAVE was asked for."""
    if "SAVE" in ret.options:
        view.saved = list(uids)


def substitute(ev: Execute, view: SelectedView | None) -> Execute:
    """The command with ``$`` replaced by the saved messages still in the folder."""
    if view is None or not _has_dollar(ev.args):
        return ev
    present = set(view.uids)
    uids = [u for u in view.saved if u in present]
    seqs = [view.uids.index(u) + 1 for u in uids]
    uid_text, seq_text = number_set(uids) or EMPTY_SET, number_set(seqs) or EMPTY_SET
    if ev.name == "SEARCH":
        return replace(ev, args=_in_search(ev.args, uid_text, seq_text))
    in_set = ev.name in SET_COMMANDS or (ev.name == "EXPUNGE" and ev.uid)
    if in_set and ev.args and ev.args[0] == "$":
        return replace(ev, args=[uid_text if ev.uid else seq_text, *ev.args[1:]])
    return ev


def _has_dollar(args: list[Token]) -> bool:
    return any(a == "$" or (isinstance(a, list) and _has_dollar(a)) for a in args)


def _in_search(args: list[Token], uid_text: str, seq_text: str) -> list[Token]:
    out: list[Token] = []
    for i, a in enumerate(args):
        if a == "$":
            before = args[i - 1] if i else ""
            after_uid = isinstance(before, str) and before.upper() == "UID"
            out.append(uid_text if after_uid else seq_text)
        elif isinstance(a, list):
            out.append(_in_search(a, uid_text, seq_text))
        else:
            out.append(a)
    return out
