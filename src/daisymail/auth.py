"""Password checks shared by SMTP AUTH, POP3 and IMAP, with the same cost for every failure.

Every failure takes the same path, whatever the reason: the throttle's growing delay, a
full argon2 verify, then the fixed failure delay, and the same reply from the caller.
An unknown user is verified against a dummy argon2 hash; a wrong password on an account
whose hash is still legacy (``{PLAIN}``, ``{SHA}``, crypt: microseconds to check) also
pays the dummy argon2 verify, so timing does not tell which accounts were not migrated.
Failures are counted per client address and per account (logins.throttle_key), not per
spelling of the name. A good login with a legacy hash is upgraded to argon2id (the
directory write in a worker thread) when the directory can be written.

A good login is remembered (authcache: an HMAC, never the password) so the same account
logging in again with the same password skips the verify; only successes are answered
from there, and a miss takes the path above unchanged, so failures cost what they did.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from daisymail.authcache import CredentialCache
from daisymail.directory.base import Directory
from daisymail.directory.model import Login, Snapshot
from daisymail.directory.passwords import (
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from daisymail.logins import resolve_login, throttle_key
from daisymail.observability import event
from daisymail.throttle import AuthThrottle

log = logging.getLogger("daisymail.auth")
_T = TypeVar("_T")


# Password hashes are CPU and memory bound (64 MiB each): more of them at once than
# there are cores only thrashes caches and delays every login, so they get their own
# pool, one thread per core, instead of the default executor that deliveries use.
_HASH_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="password")


async def _hashing(fn: Callable[..., _T], *args: object) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_HASH_POOL, fn, *args)


_rehash_due = functools.lru_cache(maxsize=4096)(needs_rehash)
"""needs_rehash parses the hash's parameters; a polling account asks about the same hash
at every login."""


def _check(stored: str | None, password: str) -> bool:
    """One thread hop for the whole check: the real verify, plus the dummy argon2 one
    whenever the real one was not a full argon2 verify that failed on its own."""
    if stored is None:
        dummy_verify(password)
        return False
    ok = verify_password(stored, password)
    if not ok and needs_rehash(stored):
        dummy_verify(password)
    return ok


@dataclass(frozen=True)
class Attempt:
    """A login name resolved: the account (None when unknown) and its throttle key."""

    login: Login | None
    key: str


@dataclass
class Authenticator:
    directory: Directory
    throttle: AuthThrottle
    failure_delay: float
    default_domain: Callable[[], str] = lambda: ""
    cache: CredentialCache = field(default_factory=lambda: CredentialCache(time.monotonic, 0))
    _synced: Snapshot | None = field(default=None, init=False, repr=False)

    def sync(self, snapshot: Snapshot) -> None:
        """Drop remembered logins of accounts that left the directory. A changed hash
        needs nothing here: it is part of every entry's HMAC, so it misses anyway."""
        if snapshot is self._synced:
            return
        self._synced = snapshot
        if len(self.cache):
            self.cache.forget_missing(login.address for login in snapshot.logins)

    def resolve(self, name: str) -> Attempt:
        """The account a login name means (logins.resolve_login) and what it counts under."""
        default = self.default_domain()
        login = resolve_login(self.directory.snapshot(), name, default_domain=default)
        return Attempt(login, throttle_key(name, login, default_domain=default))

    async def before_attempt(self, ip: str, key: str) -> None:
        """The throttle's delay for this client and account, paid before any answer."""
        delay = self.throttle.delay(ip, key)
        if delay:
            event(log, "auth.throttled", client=ip, user=key, delay=delay)
            await asyncio.sleep(delay)

    async def verify(
        self, ip: str, name: str, password: str, *, sid: str | None = None
    ) -> Login | None:
        """The account if the password is right; on failure count it and wait, so that
        failures all look alike. sid: the session's id, for the log line of a cache hit."""
        self.sync(self.directory.snapshot())
        attempt = self.resolve(name)
        await self.before_attempt(ip, attempt.key)
        login = attempt.login
        stored = login.password_hash if login is not None else None
        # The HMAC is made for every attempt, known account or not: the same few
        # microseconds whatever the name, before the verify that a miss pays in full.
        address = login.address if login is not None else attempt.key
        digest = self.cache.digest(address, stored or "", password)
        if login is not None and self.cache.check(address, digest):
            event(log, "auth.cache.hit", logging.DEBUG, sid=sid, client=ip, user=address)
            ok = True
        else:
            ok = await _hashing(_check, stored, password)
            if ok and login is not None and self.directory.snapshot() is self._synced:
                self.cache.remember(address, digest)  # not if the account changed meanwhile
        if not ok or login is None:
            await self.failed(ip, attempt.key)
            return None
        self.throttle.success(ip, attempt.key)
        await self._upgrade(login, password)
        return login

    async def failed(self, ip: str, key: str) -> None:
        self.throttle.failure(ip, key)
        await asyncio.sleep(self.failure_delay)

    async def _upgrade(self, login: Login, password: str) -> None:
        """Rehash a legacy hash, hashing in the password pool and writing in a worker
        thread: a slow database delays this login only, never the event loop."""
        if self.directory.read_only or not _rehash_due(login.password_hash):
            return
        try:
            new_hash = await _hashing(hash_password, password)
            await asyncio.to_thread(self.directory.set_password, login.user, login.domain, new_hash)
        except Exception as e:  # the login succeeded; the upgrade waits for the next one
            with contextlib.suppress(Exception):
                event(log, "auth.rehash.failed", logging.WARNING, user=login.address, error=e)
