"""The Authenticator with its login cache (issue 15 item 3): which logins skip the full
check, and that every failure still pays it, the delay and the throttle count."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

import daisymail.auth as auth_mod
from daisymail.auth import Authenticator
from daisymail.authcache import CredentialCache
from daisymail.directory.model import Domain, Login, Mailbox
from daisymail.directory.passwords import hash_password
from daisymail.directory.sql import SqlDirectory
from daisymail.throttle import AuthThrottle

HASH_A = hash_password("right")


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, str]]:
    """Every full check (argon2 or dummy) the Authenticator asks for."""
    seen: list[tuple[str | None, str]] = []
    real: Callable[[str | None, str], bool] = auth_mod._check

    def counting(stored: str | None, password: str) -> bool:
        seen.append((stored, password))
        return real(stored, password)

    monkeypatch.setattr(auth_mod, "_check", counting)
    return seen


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'directory.db'}"


def make(db: str, ttl: float = 3600) -> tuple[Authenticator, SqlDirectory, Clock]:
    """bob@a.test (password "right") in a directory that sees its own writes at once."""
    clock = Clock()
    directory = SqlDirectory(db, create=True, refresh_interval=0)
    directory.add_domain(Domain(name="a.test"))
    directory.add_mailbox(Mailbox(name="bob"))
    directory.add_login(Login("bob", "a.test", HASH_A, "bob"))
    throttle = AuthThrottle(clock, base_delay=0.01)
    auth = Authenticator(directory, throttle, 0.01, cache=CredentialCache(clock, ttl))
    return auth, directory, clock


def login(auth: Authenticator, name: str, password: str, ip: str = "192.0.2.1") -> bool:
    return asyncio.run(auth.verify(ip, name, password)) is not None


def test_second_good_login_skips_the_check(db: str, checks: list[tuple[str | None, str]]) -> None:
    auth, _, _ = make(db)
    assert login(auth, "bob@a.test", "right")
    assert len(checks) == 1
    assert login(auth, "bob@a.test", "right")
    assert login(auth, "bob%a.test ", "right")  # another spelling of the same account
    assert len(checks) == 1


def test_wrong_password_after_a_cached_login_pays_the_full_check(
    db: str,
    checks: list[tuple[str | None, str]],
) -> None:
    auth, _, _ = make(db)
    assert login(auth, "bob@a.test", "right")
    assert login(auth, "bob@a.test", "right")
    assert len(checks) == 1
    assert not login(auth, "bob@a.test", "wrong")
    assert checks[-1] == (HASH_A, "wrong") and len(checks) == 2
    # ...and it is counted: the next attempt on the account waits.
    assert auth.throttle.delay("198.51.100.7", "bob@a.test") > 0
    # The right password still hits (a wrong guess does not evict) and resets the count.
    assert login(auth, "bob@a.test", "right", ip="198.51.100.7")
    assert len(checks) == 2
    assert auth.throttle.delay("198.51.100.8", "bob@a.test") == 0


def test_unknown_user_pays_the_dummy_check_every_time(
    db: str,
    checks: list[tuple[str | None, str]],
) -> None:
    auth, _, _ = make(db)
    for _ in range(3):
        assert not login(auth, "nobody@a.test", "right")
    assert checks == [(None, "right")] * 3
    assert len(auth.cache) == 0


def test_failures_are_never_remembered(db: str, checks: list[tuple[str | None, str]]) -> None:
    auth, _, _ = make(db)
    for _ in range(3):
        assert not login(auth, "bob@a.test", "wrong")
    assert len(checks) == 3 and len(auth.cache) == 0


def test_changed_hash_and_removed_account_miss(
    db: str, checks: list[tuple[str | None, str]]
) -> None:
    auth, directory, _ = make(db)
    assert login(auth, "bob@a.test", "right")
    directory.set_password("bob", "a.test", hash_password("new"))
    assert not login(auth, "bob@a.test", "right")
    assert login(auth, "bob@a.test", "new")
    assert len(checks) == 3
    directory.remove_login("bob", "a.test")
    assert not login(auth, "bob@a.test", "new")
    assert checks[-1] == (None, "new")
    assert len(auth.cache) == 0  # the departed account's entry went with the snapshot


def test_age_and_ttl_zero(db: str, checks: list[tuple[str | None, str]]) -> None:
    auth, _, clock = make(db, ttl=60)
    assert login(auth, "bob@a.test", "right")
    clock.now += 61
    assert login(auth, "bob@a.test", "right")
    assert len(checks) == 2
    off, _, _ = make(db.replace(".db", "-off.db"), ttl=0)
    assert login(off, "bob@a.test", "right") and login(off, "bob@a.test", "right")
    assert len(checks) == 4
