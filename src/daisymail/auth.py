"""Password checks shared by SMTP AUTH and POP3, with the same cost for every failure.

An unknown user and a wrong password take the same path: a full argon2 verify
(against a dummy hash when there is no account), the throttle's growing delay, then
the fixed failure delay, and the same reply from the caller. A good login with a
legacy hash (crypt, htpasswd, plaintext) is upgraded to argon2id when the directory
can be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from daisymail.directory.base import Directory
from daisymail.directory.model import Login
from daisymail.directory.passwords import (
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from daisymail.observability import event
from daisymail.throttle import AuthThrottle

log = logging.getLogger("daisymail.auth")
_T = TypeVar("_T")


# Password hashes are CPU and memory bound (64 MiB each): more of them at once than
# there are cores only thrashes caches and delays every login, so they get their own
# pool, one thread per core, instead of the default executor that deliveries use.
_HASH_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="password")


async def _hashing(fn: Callable[..., _T], *args: str) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_HASH_POOL, fn, *args)


@dataclass
class Authenticator:
    directory: Directory
    throttle: AuthThrottle
    failure_delay: float

    async def before_attempt(self, ip: str, account: str) -> None:
        """The throttle's delay for this client and account, paid before any answer."""
        delay = self.throttle.delay(ip, account.lower())
        if delay:
            event(log, "auth.throttled", client=ip, user=account, delay=delay)
            await asyncio.sleep(delay)

    async def verify(self, ip: str, account: str, login: Login | None, password: str) -> bool:
        """Check a password; on failure count it and wait, so failures all look alike."""
        await self.before_attempt(ip, account)
        if login is None:
            await _hashing(dummy_verify, password)
            ok = False
        else:
            ok = await _hashing(verify_password, login.password_hash, password)
        if not ok or login is None:
            await self.failed(ip, account)
            return False
        self.throttle.success(ip, account.lower())
        await self._upgrade(login, password)
        return True

    async def failed(self, ip: str, account: str) -> None:
        self.throttle.failure(ip, account.lower())
        await asyncio.sleep(self.failure_delay)

    async def _upgrade(self, login: Login, password: str) -> None:
        if self.directory.read_only or not needs_rehash(login.password_hash):
            return
        new_hash = await _hashing(hash_password, password)
        try:
            self.directory.set_password(login.user, login.domain, new_hash)
        except Exception as e:  # the login succeeded; the upgrade waits for the next one
            with contextlib.suppress(Exception):
                event(log, "auth.rehash.failed", logging.WARNING, user=login.address, error=e)
