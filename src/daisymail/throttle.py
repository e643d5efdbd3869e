"""Slow down password guessing, per client address and per account.

A failure is remembered for `window` seconds under both its client IP and its account,
so one client trying many accounts and many clients trying one account are both
slowed. The delay doubles with each remembered failure up to `max_delay`. Memory is
bounded: at most `max_entries` keys per kind (the least recently failed are
forgotten) and at most `max_tracked` failures per key. Shared by SMTP AUTH and POP3;
pure apart from the injected clock. The account key is the resolved account, not the
name as typed (logins.throttle_key), so respelling a login does not reset its count.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable


class _Window:
    def __init__(self, window: float, max_entries: int, max_tracked: int) -> None:
        self.window = window
        self.max_entries = max_entries
        self.max_tracked = max_tracked
        self.entries: OrderedDict[str, deque[float]] = OrderedDict()

    def count(self, key: str, now: float) -> int:
        times = self.entries.get(key)
        if times is None:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.entries[key]
            return 0
        return len(times)

    def add(self, key: str, now: float) -> None:
        times = self.entries.get(key)
        if times is None:
            times = self.entries[key] = deque(maxlen=self.max_tracked)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
        else:
            self.entries.move_to_end(key)
        times.append(now)

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)


class AuthThrottle:
    """How long to wait before answering an authentication attempt.

    Account names are compared case-insensitively here, so varying the case of a
    name does not dodge the count. Empty keys (no address, no name) are not counted.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        window: float = 900.0,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        max_entries: int = 100_000,
        max_tracked: int = 64,
    ) -> None:
        self._clock = clock
        self._base = base_delay
        self._max = max_delay
        self._ips = _Window(window, max_entries, max_tracked)
        self._accounts = _Window(window, max_entries, max_tracked)

    def delay(self, ip: str, account: str) -> float:
        """Seconds to wait before answering; 0 when neither key has recent failures."""
        now = self._clock()
        failures = max(
            self._ips.count(ip, now) if ip else 0,
            self._accounts.count(account.lower(), now) if account else 0,
        )
        if failures == 0:
            return 0.0
        return float(min(self._max, self._base * 2.0 ** min(failures - 1, 64)))

    def failure(self, ip: str, account: str) -> None:
        now = self._clock()
        if ip:
            self._ips.add(ip, now)
        if account:
            self._accounts.add(account.lower(), now)

    def success(self, ip: str, account: str) -> None:
        """Clear the account's failures. The client's are kept: one valid account must
        not let a guesser reset its own count between guesses at others."""
        if account:
            self._accounts.forget(account.lower())
