"""Moved: the hand-off of mail made on this host is ``daisymail.delivery.Injector``.

Kept only so that imports written before the move keep working; new code imports
daisymail.delivery.
"""

from __future__ import annotations

from daisymail.delivery import Injected, Injector

__all__ = ["Injected", "Injector"]
