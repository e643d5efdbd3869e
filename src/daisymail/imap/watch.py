"""IDLE push: one look per folder for all the sessions idling on it.

Each idling session used to wake twice a second and look at its folder itself (three
stat calls in a worker thread): 10,000 idle sessions made 20,000 wake-ups a second.
Now a session in IDLE registers here and sleeps on its socket; one task per watched
folder takes the folder's fingerprint every POLL seconds and wakes its sessions only
when it changed (or the last look was too fresh to trust, see snapshots.SETTLE_NS),
well within the second IMAP clients expect news in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from daisymail.imap.snapshots import SNAPSHOTS, settled
from daisymail.store.imap_folders import ImapFolder

log = logging.getLogger("daisymail.imap")
POLL = 0.5

Wake = Callable[[], None]


class _Watched:
    def __init__(self, folder: ImapFolder) -> None:
        self.folder = folder
        self.wakes: set[Wake] = set()
        self.task: asyncio.Task[None] | None = None


class FolderWatch:
    """The folders sessions idle on, each polled by one task while anyone idles on it."""

    def __init__(self, poll: float = POLL) -> None:
        self.poll = poll
        self._folders: dict[str, _Watched] = {}

    def watch(self, folder: ImapFolder, wake: Wake) -> None:
        """Call wake (in the event loop) whenever the folder may have news."""
        watched = self._folders.get(folder.path)
        if watched is None:
            watched = self._folders[folder.path] = _Watched(folder)
        watched.wakes.add(wake)
        if watched.task is None:
            watched.task = asyncio.get_running_loop().create_task(self._run(watched))

    def unwatch(self, folder: ImapFolder, wake: Wake) -> None:
        watched = self._folders.get(folder.path)
        if watched is not None:
            watched.wakes.discard(wake)

    def watching(self) -> int:
        """How many folders are being polled (for tests and metrics)."""
        return len(self._folders)

    async def _run(self, watched: _Watched) -> None:
        last: object = None
        trusted = False
        try:
            while watched.wakes:
                await asyncio.sleep(self.poll)
                taken = time.time_ns()
                try:
                    fp = await asyncio.to_thread(SNAPSHOTS.fingerprint, watched.folder, True)
                except OSError as e:  # a full disk, a vanished folder: the sessions find out
                    log.warning("imap.watch.error folder=%s error=%s", watched.folder.path, e)
                    fp = None
                if fp != last or not trusted:
                    for wake in list(watched.wakes):
                        wake()
                last, trusted = fp, settled(fp, taken)
        finally:
            if self._folders.get(watched.folder.path) is watched:
                del self._folders[watched.folder.path]
