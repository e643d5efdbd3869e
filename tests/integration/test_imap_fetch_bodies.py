"""A FETCH of many bodies (a lazy reply, made in batches while it is sent) arrives
whole and in order, the big message streamed from its file among the small ones."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Daisy
from tests.integration.imap_support import imap, start_server


def test_uid_fetch_of_many_bodies(tmp_path: Path) -> None:
    d = start_server(Daisy(tmp_path / "daisy"))
    try:
        m = imap(d, "other@example.test", "other-pw")
        m.create("Bodies")
        bodies = []
        for i in range(60):  # 6 MB in all: made lazily
            size = 2 * 1024 * 1024 if i == 30 else 100 * 1024
            line = b"line %d of message %d, padded out to a fair length.\r\n"
            text = b"".join(line % (n, i) for n in range(size // 48))
            bodies.append(b"Subject: body %d\r\n\r\n" % i + text)
            assert m.append("Bodies", None, None, bodies[-1])[0] == "OK"
        m.select("Bodies", readonly=True)
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        got = [d for d in data if isinstance(d, tuple)]
        assert len(got) == len(bodies)
        for i, (head, body) in enumerate(got):
            assert re.match(rb"\d+ \(UID %d BODY\[\] \{\d+\}" % (i + 1), head), head
            assert body == bodies[i], f"message {i} differs"
        m.logout()
    finally:
        d.stop()
