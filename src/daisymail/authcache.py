"""Remembered good logins, so a polling client's repeated login skips the argon2 verify.

An entry is one account's last good login: an HMAC-SHA256, under a random key made when
the process starts and never written anywhere, of the account's address, its stored
password hash and the password that worked. The password itself is never kept. A login
is answered from here only when the same account, the same stored hash (so ``user
passwd`` and any re-hash miss at once) and the same password give the same HMAC, within
``ttl`` seconds of the verification that made the entry. Everything else (unknown users,
wrong passwords, changed hashes) goes to the full verify: the cache can only say yes to
what argon2 said yes to, and never changes what a failure costs.

Bounded by ``max_entries`` (least recently used dropped first) and by age; accounts that
leave the directory are dropped by forget_missing(). Pure apart from the injected clock;
the caller keeps it on the event loop, so there is no locking.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable

DEFAULT_MAX_ENTRIES = 50_000
"""About 150 bytes an entry: a few MiB at most, more accounts than a host polls at once."""


class CredentialCache:
    def __init__(
        self,
        clock: Callable[[], float],
        ttl: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        key: bytes | None = None,
    ) -> None:
        self._clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = key if key is not None else secrets.token_bytes(32)
        # address -> (HMAC of address, stored hash and password; when it was verified)
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def digest(self, address: str, stored: str, password: str) -> bytes:
        """The HMAC an entry holds. NUL separates the parts: neither an address nor a
        stored hash contains one, and the password, which may, comes last."""
        msg = b"\0".join((address.encode(), stored.encode(), password.encode("utf-8", "replace")))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def check(self, address: str, digest: bytes) -> bool:
        """True when this account's remembered login has this digest and is fresh."""
        entry = self._entries.get(address)
        if entry is None or not self.enabled:
            return False
        remembered, verified_at = entry
        if self._clock() - verified_at >= self.ttl:
            del self._entries[address]
            return False
        if not hmac.compare_digest(remembered, digest):
            return False  # a wrong password: the entry stays for the right one
        self._entries.move_to_end(address)
        return True

    def remember(self, address: str, digest: bytes) -> None:
        """Record a login that the full verify accepted (and only such a login)."""
        if not self.enabled:
            return
        self._entries[address] = (digest, self._clock())
        self._entries.move_to_end(address)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, address: str) -> None:
        self._entries.pop(address, None)

    def forget_missing(self, addresses: Iterable[str]) -> int:
        """Drop the accounts not in addresses (the directory's logins); how many went."""
        keep = set(addresses)
        gone = [a for a in self._entries if a not in keep]
        for a in gone:
            del self._entries[a]
        return len(gone)

    def clear(self) -> None:
        self._entries.clear()
