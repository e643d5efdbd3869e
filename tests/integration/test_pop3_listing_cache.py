"""The Maildir listing cache on real sockets (issue 15, logins for polling clients).

A login reuses the listing of the last one while new/, cur/ and the UIDL list are as
they were; each test first lets the mailbox settle (SETTLE_SECONDS, so that the server
does keep the listing), logs in once, changes the Maildir from this process as another
mail program would, and checks that the very next login sees the change.
"""

from __future__ import annotations

import os
import poplib
import smtplib
import time
from pathlib import Path

from daisymail.store.listing_cache import SETTLE_SECONDS
from daisymail.store.maildir import write_uidlist
from daisymail.store.maildir_write import add_message
from tests.conftest import Daisy

USER, PASSWORD = "demo@example.test", "demo-pw"


def send(d: Daisy, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=10) as s:
        for i in range(n):
            s.sendmail("s@example.net", [USER], f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())


def maildir(d: Daisy) -> Path:
    (new,) = (d.root / "mail").glob("*/new")
    return new.parent


def listing(d: Daisy) -> tuple[tuple[int, int], list[str], list[str]]:
    """One login: STAT, UIDL and LIST, then QUIT without deleting."""
    p = poplib.POP3("127.0.0.1", d.ports["pop3"], timeout=10)
    try:
        p.user(USER)
        p.pass_(PASSWORD)
        stat = p.stat()
        uidls = [line.decode() for line in p.uidl()[1]]
        sizes = [line.decode() for line in p.list()[1]]
    finally:
        p.quit()
    return stat, uidls, sizes


def settled_listing(d: Daisy) -> tuple[tuple[int, int], list[str], list[str]]:
    """Wait until the Maildir may be cached, then log in twice (the second from cache)."""
    time.sleep(SETTLE_SECONDS + 0.2)
    first = listing(d)
    assert listing(d) == first
    return first


def test_delivery_by_another_program_is_seen_at_once(daisy: Daisy) -> None:
    send(daisy, 3)
    (count, _), uidls, _ = settled_listing(daisy)
    assert count == 3
    unique = add_message(str(maildir(daisy)), [b"Subject: other\n\nfrom elsewhere\n"])
    (count, _), after, _ = listing(daisy)
    assert count == 4
    assert after[:3] == uidls and after[3] == f"4 {unique}"


def test_deletion_and_rename_by_another_program_are_seen_at_once(daisy: Daisy) -> None:
    send(daisy, 3)
    (count, octets), uidls, sizes = settled_listing(daisy)
    box = maildir(daisy)
    first, second = sorted(os.listdir(box / "new"))[:2]
    # Another reader marks the first message seen (new/ -> cur/, flags added)...
    os.rename(box / "new" / first, box / "cur" / f"{first}:2,S")
    assert listing(daisy) == ((count, octets), uidls, sizes)
    time.sleep(SETTLE_SECONDS + 0.2)
    assert listing(daisy) == ((count, octets), uidls, sizes)
    # ...and deletes the second: both right away, and the moved one is still readable.
    os.unlink(box / "new" / second)
    (count, _), after, _ = listing(daisy)
    assert count == 2
    assert [u.split()[1] for u in after] == [uidls[0].split()[1], uidls[2].split()[1]]
    p = poplib.POP3("127.0.0.1", daisy.ports["pop3"], timeout=10)
    p.user(USER)
    p.pass_(PASSWORD)
    assert b"Subject: m0" in b"\n".join(p.retr(1)[1])
    p.dele(1)
    p.quit()
    assert listing(daisy)[0][0] == 1


def test_a_change_in_the_same_clock_tick_is_not_missed(daisy: Daisy) -> None:
    """new/ left with the mtime it had, as two changes within one tick of a coarse clock
    leave it: the next login must still see the message."""
    send(daisy, 2)
    settled_listing(daisy)
    new = maildir(daisy) / "new"
    before = os.stat(new)
    add_message(str(maildir(daisy)), [b"Subject: same tick\n\nx\n"])
    os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(new).st_mtime_ns == before.st_mtime_ns
    assert listing(daisy)[0][0] == 3


def test_changes_right_after_a_login_keep_being_seen(daisy: Daisy) -> None:
    """Deliveries and logins interleaved within the same second: every login counts
    every message delivered before it."""
    send(daisy, 1)
    box = str(maildir(daisy))
    for n in range(2, 9):
        add_message(box, [b"Subject: quick\n\nx\n"])
        assert listing(daisy)[0][0] == n


def test_uidlist_change_is_seen_at_once(daisy: Daisy) -> None:
    send(daisy, 2)
    _, uidls, _ = settled_listing(daisy)
    unique = uidls[0].split()[1]
    write_uidlist(str(maildir(daisy)), {unique: "kept-from-mbox"})
    assert listing(daisy)[1][0] == "1 kept-from-mbox"


def test_stale_tmp_file_is_swept_at_the_next_login(daisy: Daisy) -> None:
    send(daisy, 1)
    settled_listing(daisy)
    stale = maildir(daisy) / "tmp" / "1.M1P1Q1.crashed"
    stale.write_bytes(b"cut off by a crash")
    old = time.time() - 40 * 3600
    os.utime(stale, (old, old))
    listing(daisy)
    assert not stale.exists()


def test_in_use_is_still_refused_with_a_cached_listing(daisy: Daisy) -> None:
    send(daisy, 1)
    settled_listing(daisy)
    holder = poplib.POP3("127.0.0.1", daisy.ports["pop3"], timeout=10)
    holder.user(USER)
    holder.pass_(PASSWORD)
    try:
        p = poplib.POP3("127.0.0.1", daisy.ports["pop3"], timeout=10)
        p.user(USER)
        try:
            p.pass_(PASSWORD)
            raise AssertionError("a second session got the maildrop")
        except poplib.error_proto as e:
            assert b"[IN-USE]" in e.args[0]
        p.quit()
    finally:
        holder.quit()
