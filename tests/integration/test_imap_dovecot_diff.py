"""Daisy against Dovecot, message by message, on a corpus of tricky MIME messages.

Debian's Dovecot imap binary runs pre-authenticated over a copy of the same Maildir,
talking IMAP on its stdin and stdout (imaplib.IMAP4_stream); Daisy runs as the real
server. Both answer the same FETCH and SEARCH commands and the answers are compared
after the normalising IMAP allows (case of MIME types and parameter names). Where the
two deliberately differ, the difference is written down in DIFFERENCES with its reason
(docs/imap.md, "Differences from Dovecot") and the test checks that it is exactly that.
"""

from __future__ import annotations

import hashlib
import imaplib
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daisymail.imap.mime import crlf
from tests.conftest import IN_CI, Daisy
from tests.integration.imap_wire import Parsed, fetch_items, joined, parse

CORPUS = Path(__file__).parent.parent / "data" / "imap_corpus"
DOVECOT_IMAP = Path("/usr/lib/dovecot/imap")
NAMES = sorted(p.name for p in CORPUS.glob("*.eml"))


def _dovecot() -> Path:
    if not DOVECOT_IMAP.exists():
        if IN_CI:
            pytest.fail("Dovecot's imap is not installed (scripts/test-deps installs it)")
        pytest.skip("Dovecot's imap (dovecot-imapd) is not installed")
    return DOVECOT_IMAP


def _fill(maildir: Path) -> None:
    """The corpus as delivered mail, with fixed arrival times (INTERNALDATE)."""
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(NAMES):
        path = maildir / "new" / f"{1700000000 + i}.corpus{i:02d}.test"
        path.write_bytes((CORPUS / name).read_bytes())
        when = 1700000000 + i * 86400
        os.utime(path, (when, when))


def _dovecot_session(root: Path) -> imaplib.IMAP4:
    """Dovecot imap, pre-authenticated, over its own copy of the corpus Maildir."""
    binary = _dovecot()
    maildir, home = root / "Maildir", root / "home"
    _fill(maildir)
    home.mkdir()
    conf = root / "dovecot.conf"
    conf.write_text(
        f"protocols = imap\nssl = no\nlog_path = {root}/dovecot.log\n"
        f"mail_location = maildir:{maildir}\n"
    )
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:  # Dovecot never reads mail as root: give the copy to nobody
        uid = gid = 65534
        for path in [root, *root.rglob("*")]:
            os.chown(path, uid, gid)
    env = {"USER": "corpus", "HOME": str(home), "PATH": "/usr/bin"}
    words = [
        "env",
        "-i",
        *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
        str(binary),
        "-c",
        shlex.quote(str(conf)),
        f"-o mail_uid={uid} -o mail_gid={gid}",
    ]
    command = " ".join(words)
    return imaplib.IMAP4_stream(command)


class Side:
    """One server's session, with its messages known by their octets (BODY[])."""

    def __init__(self, name: str, session: imaplib.IMAP4) -> None:
        self.name = name
        self.m = session
        typ, data = self.m.select("INBOX", readonly=True)
        assert typ == "OK", data
        self.count = int(data[0] or 0)
        self.seq_of: dict[str, int] = {}
        self.name_of: dict[int, str] = {}
        wanted = {hashlib.sha256(crlf((CORPUS / n).read_bytes())).hexdigest(): n for n in NAMES}
        for seq in range(1, self.count + 1):
            body = self.fetch(seq, "BODY.PEEK[]")[b"BODY[]"]
            assert isinstance(body, bytes)
            digest = hashlib.sha256(body).hexdigest()
            assert digest in wanted, f"{name}: message {seq} is no corpus message as sent"
            self.seq_of[wanted[digest]] = seq
            self.name_of[seq] = wanted[digest]

    def fetch(self, seq: int, items: str) -> dict[bytes, Parsed]:
        typ, data = self.m.fetch(str(seq), f"({items})")
        assert typ == "OK", (self.name, items, data)
        return fetch_items(data)  # type: ignore[arg-type]

    def search(self, *criteria: str, literal: bytes | None = None) -> set[str] | str:
        """The corpus names found, or the server's error text."""
        if literal is not None:
            self.m.literal = literal  # type: ignore[attr-defined]
        try:
            typ, data = self.m.search("UTF-8" if literal else None, *criteria)
        except self.m.error as e:
            return f"error: {e}"
        if typ != "OK":
            return f"{typ}: {data}"
        return {self.name_of[int(n)] for n in (data[0] or b"").split()}


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    _dovecot()
    # Not under pytest's private (0700) temporary root: Dovecot drops to nobody when run as root.
    place = Path(tempfile.mkdtemp(prefix="daisy-dovecot-"))
    place.chmod(0o755)
    dovecot = Side("dovecot", _dovecot_session(place))
    daisy = Daisy(tmp_path_factory.mktemp("diff") / "daisy")
    daisy.init()
    daisy.cli("domain", "add", "example.test")
    daisy.add_user("corpus@example.test", "corpus-pw")
    _fill(daisy.root / "mail" / "corpus.example.test")
    daisy.start()
    session = imaplib.IMAP4("127.0.0.1", daisy.ports["imap"], timeout=20)
    session.login("corpus@example.test", "corpus-pw")
    ours = Side("daisy", session)
    yield ours, dovecot
    session.logout()
    dovecot.m.logout()
    daisy.stop()
    shutil.rmtree(place, ignore_errors=True)


# -- normalising what IMAP lets differ ----------------------------------------------------


def _upper(v: Parsed) -> Parsed:
    return v.upper() if isinstance(v, bytes) else v


def _params(v: Parsed) -> Parsed:
    """Parameter names are case-insensitive, and so is the charset value."""
    if not isinstance(v, list):
        return v
    out: list[Parsed] = []
    for i in range(0, len(v) - 1, 2):
        key = _upper(v[i])
        out += [key, _upper(v[i + 1]) if key == b"CHARSET" else v[i + 1]]
    return out


def _disposition(v: Parsed) -> Parsed:
    if not isinstance(v, list) or len(v) != 2:
        return v
    return [_upper(v[0]), _params(v[1])]


def norm_structure(bs: Parsed) -> Parsed:
    """BODYSTRUCTURE with types, encodings and parameter names in one case."""
    if not isinstance(bs, list):
        return bs
    if bs and isinstance(bs[0], list):  # multipart: children, then subtype and extensions
        n = 0
        while n < len(bs) and isinstance(bs[n], list):
            n += 1
        out = [norm_structure(c) for c in bs[:n]]
        rest = list(bs[n:])
        if rest:
            rest[0] = _upper(rest[0])
        if len(rest) > 1:
            rest[1] = _params(rest[1])
        if len(rest) > 2:
            rest[2] = _disposition(rest[2])
        return out + rest
    out = list(bs)
    for i in (0, 1, 5):
        if i < len(out):
            out[i] = _upper(out[i])
    if len(out) > 2:
        out[2] = _params(out[2])
    is_message = out[:2] == [b"MESSAGE", b"RFC822"]
    if is_message and len(out) > 8:
        out[8] = norm_structure(out[8])
    ext = 10 if is_message else (8 if out[:1] == [b"TEXT"] else 7)
    if len(out) > ext + 1:
        out[ext + 1] = _disposition(out[ext + 1])
    return out


def part_paths(bs: Parsed, prefix: str = "") -> list[tuple[str, bool]]:
    """Every section number of a BODYSTRUCTURE, and whether it is a message/rfc822."""
    if not isinstance(bs, list):
        return []
    out: list[tuple[str, bool]] = []
    if bs and isinstance(bs[0], list):
        children = []
        for c in bs:
            if not isinstance(c, list):
                break
            children.append(c)
        for i, child in enumerate(children, 1):
            path = f"{prefix}{i}"
            out += _single_or_multi(child, path)
        return out
    return _single_or_multi(bs, prefix + "1") if not prefix else []


def _single_or_multi(bs: Parsed, path: str) -> list[tuple[str, bool]]:
    assert isinstance(bs, list)
    if isinstance(bs[0], list):
        return [(path, False), *part_paths(bs, path + ".")]
    is_message = [_upper(bs[0]), _upper(bs[1])] == [b"MESSAGE", b"RFC822"]
    out = [(path, is_message)]
    if is_message and len(bs) > 8:
        inner = bs[8]
        if isinstance(inner, list) and inner and isinstance(inner[0], list):
            out += part_paths(inner, path + ".")
        else:
            out.append((path + ".1", False))
    return out


# -- expected differences -------------------------------------------------------------------

# (message, item) -> why Daisy deliberately answers otherwise; docs/imap.md says more.
# Each entry also says what Daisy's answer must be, so the difference stays exactly this.
Check = Callable[[Parsed, Parsed], bool]
NO_SUBTYPE = "Content-Type without a subtype: RFC 2045's text/plain, not Dovecot's empty subtype"
NO_BOUNDARY = (
    "a multipart whose boundary is missing or never appears: Daisy serves the body as one "
    "text part a reader can show; Dovecot makes it a multipart with one empty part"
)


def _subtype_only(ours: Parsed, theirs: Parsed) -> bool:
    assert isinstance(ours, list) and isinstance(theirs, list)
    return ours[1] == b"PLAIN" and theirs[1] == b"" and ours[2:] == theirs[2:]


def _one_text_part(ours: Parsed, theirs: Parsed) -> bool:
    assert isinstance(ours, list) and isinstance(theirs, list)
    return ours[:2] == [b"TEXT", b"PLAIN"] and isinstance(theirs[0], list) and theirs[0][6] == 0


def _body_kept(ours: Parsed, theirs: Parsed) -> bool:
    return isinstance(ours, bytes) and len(ours) > 0 and theirs == b""


def _found_only_by_us(name: str) -> Check:
    return lambda ours, theirs: (
        isinstance(ours, list)
        and sorted(ours) == sorted([*theirs, name] if isinstance(theirs, list) else [name])
    )


DIFFERENCES: dict[tuple[str, str], tuple[str, Check]] = {
    ("07-malformed-content-type.eml", "BODYSTRUCTURE"): (NO_SUBTYPE, _subtype_only),
    ("07-malformed-content-type.eml", "BODY"): (NO_SUBTYPE, _subtype_only),
    **{
        (name, item): (NO_BOUNDARY, check)
        for name in ("08-multipart-no-boundary.eml", "10-boundary-not-in-body.eml")
        for item, check in (
            ("BODYSTRUCTURE", _one_text_part),
            ("BODY", _one_text_part),
            ("BODY.PEEK[1]", _body_kept),
            ("BODY.PEEK[1.MIME]", _body_kept),
            ("BODY.PEEK[1]<2.7>", _body_kept),
        )
    },
    ("13-headers-only.eml", "BODY.PEEK[HEADER.FIELDS.NOT (Subject Date)]"): (
        "HEADER.FIELDS.NOT ends with the blank line like HEADER.FIELDS, even for a message "
        "that has none; Dovecot adds it to HEADER.FIELDS only",
        lambda ours, theirs: isinstance(theirs, bytes) and ours == theirs + b"\r\n",
    ),
    ("SEARCH", 'BODY "Hello world"'): (
        "base64 with junk in it is decoded leniently (the junk skipped), as mail readers "
        "show it; Dovecot's decoder stops at the junk",
        _found_only_by_us("17-base64-garbage.eml"),
    ),
    ("SEARCH", "SENTBEFORE 1-Feb-2023"): (
        "a message whose Date: cannot be read has no sent date and matches no SENT* key; "
        "Dovecot takes it as 1970 and finds it BEFORE any date",
        lambda ours, theirs: (
            isinstance(theirs, list) and sorted([*ours, "25-bad-date.eml"]) == sorted(theirs)
        ),  # type: ignore[misc]
    ),
}


def _compare(name: str, item: str, ours: Parsed, theirs: Parsed) -> str | None:
    known = DIFFERENCES.get((name, item))
    if known is not None:
        reason, check = known
        if ours == theirs:
            return f"{name} {item}: expected to differ ({reason}) but both say {ours!r}"
        if not check(ours, theirs):
            return f"{name} {item}: differs otherwise than documented ({reason}): {ours!r}"
        return None
    if ours != theirs:
        return f"{name} {item}:\n  daisy:   {ours!r}\n  dovecot: {theirs!r}"
    return None


def _items_for(bs: Parsed) -> list[str]:
    items = [
        "BODY.PEEK[HEADER]",
        "BODY.PEEK[TEXT]",
        "BODY.PEEK[HEADER.FIELDS (From Subject X-Missing)]",
        "BODY.PEEK[HEADER.FIELDS.NOT (Subject Date)]",
        "BODY.PEEK[]<0.40>",
        "BODY.PEEK[]<25.10>",
        "BODY.PEEK[TEXT]<3.20>",
        "BODY.PEEK[]<100000.10>",
        "BODY.PEEK[1]",
        "BODY.PEEK[2]",
    ]
    for path, is_message in part_paths(bs):
        items += [f"BODY.PEEK[{path}]", f"BODY.PEEK[{path}.MIME]", f"BODY.PEEK[{path}]<2.7>"]
        if is_message:
            items += [f"BODY.PEEK[{path}.HEADER]", f"BODY.PEEK[{path}.TEXT]"]
    return list(dict.fromkeys(items))


def _label(item: str) -> bytes:
    """The name an item comes back under: PEEK dropped, a partial's length dropped."""
    label = item.replace("BODY.PEEK[", "BODY[")
    if "<" in label:
        label = label[: label.index("<")] + "<" + label.split("<")[1].split(".")[0] + ">"
    return label.upper().encode()


@pytest.mark.parametrize("name", NAMES)
def test_fetch_agrees_with_dovecot(sides: tuple[Side, Side], name: str) -> None:
    ours, theirs = sides
    a_seq, b_seq = ours.seq_of[name], theirs.seq_of[name]
    problems: list[str] = []
    simple = "RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY"
    a, b = ours.fetch(a_seq, simple), theirs.fetch(b_seq, simple)
    for key, norm in (
        (b"RFC822.SIZE", lambda v: v),
        (b"ENVELOPE", lambda v: v),
        (b"BODYSTRUCTURE", norm_structure),
        (b"BODY", norm_structure),
    ):
        problems.append(_compare(name, key.decode(), norm(a.get(key)), norm(b.get(key))))
    for item in _items_for(b[b"BODYSTRUCTURE"]):
        label = _label(item)
        got_a = ours.fetch(a_seq, item)
        got_b = theirs.fetch(b_seq, item)
        va = got_a.get(label, got_a)
        vb = got_b.get(label, got_b)
        problems.append(_compare(name, item, va, vb))
    found = [p for p in problems if p]
    assert not found, "\n".join(found)


SEARCHES: list[tuple[tuple[str, ...], bytes | None]] = [
    (("FROM", "alice"), None),
    (("FROM", '"example.de"'), None),
    (("FROM",), "Jürgen".encode()),
    (("TO",), "François".encode()),
    (("SUBJECT",), "Grüße".encode()),
    (("SUBJECT",), "Größe".encode()),
    (("SUBJECT",), "café".encode()),
    (("SUBJECT", '"Fwd:"'), None),
    (("TO", "undisclosed-recipients"), None),
    (("CC", "ben@example.com"), None),
    (("BCC", "hidden"), None),
    (("HEADER", "Message-ID", "corpus.test"), None),
    (("HEADER", "X-Long", "xxxxxxxxxx"), None),
    (("HEADER", "Content-Type", "multipart"), None),
    (("HEADER", "References", '""'), None),
    (("BODY", "hello"), None),
    (("BODY", '"inner plain"'), None),
    (("BODY", '"level three"'), None),
    (("BODY",), "Köln".encode()),
    (("BODY",), "Grüße".encode()),
    (("BODY",), "café".encode()),
    (("BODY",), "naïve".encode()),
    (("BODY", '"Hello world"'), None),
    (("BODY", "boundary"), None),
    (("TEXT", "alice"), None),
    (("TEXT", "report.pdf"), None),
    (("TEXT",), "résumé".encode()),
    (("SENTBEFORE", "1-Feb-2023"), None),
    (("SENTSINCE", "20-Feb-2023"), None),
    (("SENTON", "1-Feb-2023"), None),
    (("BEFORE", "20-Nov-2023"), None),
    (("SINCE", "5-Dec-2023"), None),
    (("ON", "25-Nov-2023"), None),
    (("LARGER", "1000"), None),
    (("SMALLER", "300"), None),
    (("NOT", "FROM", "example.org"), None),
    (("OR", "SUBJECT", "digest", "FROM", "qp@"), None),
    (("NOT", "OR", "LARGER", "500", "BODY", "text"), None),
    (("UNSEEN", "SUBJECT", "group"), None),
]


@pytest.mark.parametrize(("criteria", "literal"), SEARCHES, ids=lambda v: repr(v))
def test_search_agrees_with_dovecot(
    sides: tuple[Side, Side], criteria: tuple[str, ...], literal: bytes | None
) -> None:
    ours, theirs = sides
    a = ours.search(*criteria, literal=literal)
    b = theirs.search(*criteria, literal=literal)
    key = " ".join(criteria) + (" " + literal.decode() if literal else "")
    found_a: Parsed = a if isinstance(a, str) else sorted(a)  # type: ignore[assignment,misc]
    found_b: Parsed = b if isinstance(b, str) else sorted(b)  # type: ignore[assignment,misc]
    problem = _compare("SEARCH", key, found_a, found_b)
    assert problem is None, problem


def test_corpus_is_complete() -> None:
    """The corpus covers what the brief lists; a lost file would shrink the test."""
    assert len(NAMES) >= 28
    assert shutil.which("env") is not None
    assert parse(joined([(b"1 (X {3}", b"abc"), b")"])) == [1, [b"X", b"abc"]]
