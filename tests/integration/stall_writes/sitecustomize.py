"""A stalled disk, for tests: loaded into the server only through PYTHONPATH.

While the file named by DAISY_TEST_STALL_WRITES exists, any os.write that takes a
regular file past 1 MiB blocks until the file is removed (as a write does on a disk
that stopped answering); ``<that file>.hit`` is created when a write starts waiting.
Small files are never stalled, so the other sessions' deliveries can still complete.
"""

from __future__ import annotations

import os
import stat
import time

_STALL = os.environ.get("DAISY_TEST_STALL_WRITES", "")
_LIMIT = 1 << 20

if _STALL:
    _write = os.write

    def _stalling_write(fd: int, data: bytes, /) -> int:
        try:
            past = os.lseek(fd, 0, os.SEEK_CUR) + len(data) > _LIMIT
            past = past and stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            past = False
        if past and os.path.exists(_STALL):
            with open(_STALL + ".hit", "w"):
                pass
            while os.path.exists(_STALL):
                time.sleep(0.01)
        return _write(fd, data)

    os.write = _stalling_write
