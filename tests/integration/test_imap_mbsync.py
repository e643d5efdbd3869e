"""mbsync (isync): a two-way sync of folders, flags, new and deleted messages."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daisy, require_tool
from tests.integration.imap_support import imap, send, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = start_server(Daisy(tmp_path_factory.mktemp("imapsync") / "daisy"))
    yield d
    d.stop()


def _mbsync(daisy: Daisy, tmp: Path) -> subprocess.CompletedProcess[str]:
    mbsync = require_tool("mbsync")
    local = tmp / "local"
    local.mkdir(exist_ok=True)
    rc = tmp / "mbsyncrc"
    rc.write_text(
        "IMAPAccount daisy\n"
        "Host 127.0.0.1\n"
        f"Port {daisy.ports['imap']}\n"
        "User sync@example.test\n"
        "Pass sync-pw\n"
        "SSLType None\n"
        "AuthMechs LOGIN\n"
        "\n"
        "IMAPStore remote\n"
        "Account daisy\n"
        "\n"
        "MaildirStore local\n"
        f"Path {local}/\n"
        f"Inbox {local}/INBOX\n"
        "SubFolders Verbatim\n"
        "\n"
        "Channel sync\n"
        "Far :remote:\n"
        "Near :local:\n"
        "Patterns *\n"
        "Create Both\n"
        "Expunge Both\n"
        "SyncState *\n"
    )
    return subprocess.run(
        [mbsync, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=120
    )


def _files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("new", "cur") for p in (folder / sub).iterdir())


def test_two_way_sync(server: Daisy, tmp_path: Path) -> None:
    send(server, "sync@example.test", "first")
    send(server, "sync@example.test", "second")
    res = _mbsync(server, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    local = tmp_path / "local"
    inbox = _files(local / "INBOX")
    assert len(inbox) == 2
    for name in ("Sent", "Drafts", "Junk", "Trash", "Archive"):
        assert (local / name / "cur").is_dir(), name
    # locally: read the first message, delete the second, file a new one in Archive
    first, second = sorted(inbox, key=lambda p: b"second" in p.read_bytes())
    first.rename(local / "INBOX" / "cur" / (first.name.split(":")[0] + ":2,S"))
    second.rename(local / "INBOX" / "cur" / (second.name.split(":")[0] + ":2,T"))
    (local / "Archive" / "new" / "1700000000.local.x").write_bytes(
        b"Subject: filed locally\r\n\r\nkeep me\r\n"
    )
    (local / "Projects").mkdir()
    for sub in ("cur", "new", "tmp"):
        (local / "Projects" / sub).mkdir()
    res = _mbsync(server, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    m = imap(server, "sync@example.test", "sync-pw")
    _, data = m.select("INBOX")
    assert data == [b"1"]
    _, data = m.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"\\Seen" in data[0][0] and b"Subject: first" in data[0][1]  # type: ignore[index]
    _, data = m.select("Archive")
    assert data == [b"1"]
    _, data = m.fetch("1", "BODY.PEEK[TEXT]")
    assert data[0][1] == b"keep me\r\n"  # type: ignore[index]
    _, listing = m.list()
    assert any(b'"Projects"' in line for line in listing)  # type: ignore[operator]
    # and back: a flag set on the server reaches the local copy
    m.select("INBOX")
    m.store("1", "+FLAGS", "\\Flagged")
    m.logout()
    res = _mbsync(server, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (only,) = _files(local / "INBOX")
    assert only.name.endswith(":2,FS")
