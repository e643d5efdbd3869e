"""mbox → Maildir keeps every UIDL, size and body, for every mbox vector the suite has."""

from __future__ import annotations

from pathlib import Path

import pytest

from daisymail.directory.model import Mailbox
from daisymail.store.base import ViewOptions
from tests.unit import test_convert as tc
from tests.unit import test_mbox_view as tv
from tests.unit import test_mbox_write as tw

FROM = tv.FROM
PLAIN_TWO = (
    b"From alice@example.net  Mon Nov 30 09:00:00 2026\nSubject: hi\n\nfirst\n\n"
    b"From bob@example.net  Mon Nov 30 09:05:00 2026\nSubject: re\n\nsecond\n\n"
)
VECTORS = {
    "plain-two": PLAIN_TWO,
    "B1": tv.B1,
    "B4": tv.B4,
    "convert-B1": tc.B1,
    "procmail-P1P2P4": tw.P1_OUT + tw.P2_OUT + tw.P4_OUT,
    "short-headers": FROM + b"S: 1\n\n" + FROM + b"S: 2\n\n",
    "identical-messages": FROM + b"S: x\n\nline\n\n" + FROM + b"S: x\n\nline\n\n",
    "empty-bodies": FROM + b"\n" + FROM + b"\n",
    "x-uidl": (
        FROM
        + b"x-uidl: "
        + b"u" * 60
        + b"\n\n"
        + FROM
        + b"X-UIDL: crkept\r\n\n"
        + FROM
        + b"Subject: s\n\nX-UIDL: inbody\n\n"
        + FROM
        + b"X-UIDL: \nSubject: empty\n\n"
    ),
    "volatile-headers": FROM + b"STATUS: RO\nx-status: A\nLines: 3\nContent-Length:12\n"
    b"Subject: s\n\nstatus: in body\nContent-Length: 4\nStatus:no space\n\n",
    "prelude-blank": b"junk\n\n" + FROM + b"X-UIDL: one\n\n" + FROM + b"X-UIDL: one\n\n",
    "prelude": b"junk\n" + FROM + b"X-UIDL: one\n\n" + FROM + b"X-UIDL: one\n\n",
    "nul-bytes": FROM + b"S: a\x00b\n\nx\x00\x00y\n\n",
    "crlf-mixed": b"From a@x  Mon Jan  5 10:00:00 2004\r\nA: b\r\n\r\nmixed\nline\r\n\r\n",
    "unterminated-last": FROM + b"S: 1\n\n" + FROM + b"S: 2\n\npartial",
    "imap-control": tv.IMAP + tv.B1,
    "inner-from": FROM + b"Subject: s\n\nbody\nFrom inside Mon Jan  5 10:00:00 2004\nend\n",
    "long-from": b"From a@x  Mon Jan  5 10:00:00 2004 " + b"z" * 1100 + b"\nSubject: s\n\n",
    "long-lines": b"".join(FROM + b"S: x\n\n" + b"y" * n + b"\n\n" for n in (1022, 1023, 2047)),
    "dates-out-of-order": (
        b"From a@x  Thu Nov 26 09:56:38 2026\nS: 1\n\nx\n\n"
        b"From b@x  Mon Jan  5 10:00:00 2004\nS: 2\n\ny\n\n"
        b"From c@x  Mon Jan  5 10:00:00 2099\nS: 3\n\nz\n\n"
    ),
}
OPTIONS = {
    "plain": ViewOptions(),
    "x-uidl": ViewOptions(use_x_uidl=True),
    "hide-imap": ViewOptions(hide_imap_control_message=True),
}


@pytest.mark.parametrize("vector", VECTORS)
@pytest.mark.parametrize("option", OPTIONS)
def test_every_mbox_vector_keeps_uidls(tmp_path: Path, vector: str, option: str) -> None:
    env = tc.Env(tmp_path)
    options = OPTIONS[option]
    box = env.mail / "jsmith"
    box.write_bytes(VECTORS[vector])
    env.add(Mailbox("jsmith", "mbox", str(box)))
    before = env.seen(options=options)
    bodies = env.bodies(options=options)
    assert before, "every vector has a message"
    result = env.convert("maildir", options)
    assert result.messages == len(before)
    assert env.box().format == "maildir"
    assert env.seen(options=options) == before
    assert env.bodies(options=options) == bodies
