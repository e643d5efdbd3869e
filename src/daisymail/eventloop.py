"""Which event loop a Daisy process runs: uvloop when it is installed (a dependency on
Linux: the same asyncio API with less CPU per event), the standard library's loop with
``DAISYMAIL_LOOP=asyncio`` in the environment (for debugging, or to compare the two).
The server and its mail-auth workers both start their loops here."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop maker, or None for the standard library's."""
    if os.environ.get("DAISYMAIL_LOOP") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on the loop chosen above."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
