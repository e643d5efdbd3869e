"""The login cache on its own (issue 15 item 3): bounded by size and age, keyed by an HMAC
of account, stored hash and password, and never holding the password."""

from __future__ import annotations

import gc

from daisymail.authcache import CredentialCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def remembered(cache: CredentialCache, address: str, stored: str, password: str) -> bool:
    return cache.check(address, cache.digest(address, stored, password))


def test_remembered_login_hits_and_other_passwords_miss() -> None:
    cache = CredentialCache(Clock(), 3600)
    cache.remember("bob@a.test", cache.digest("bob@a.test", "$argon2id$h1", "right"))
    assert remembered(cache, "bob@a.test", "$argon2id$h1", "right")
    assert not remembered(cache, "bob@a.test", "$argon2id$h1", "wrong")
    assert not remembered(cache, "bob@a.test", "$argon2id$h1", "right ")
    assert not remembered(cache, "eve@a.test", "$argon2id$h1", "right")
    # A wrong password leaves the entry for the right one.
    assert remembered(cache, "bob@a.test", "$argon2id$h1", "right")


def test_a_changed_stored_hash_misses() -> None:
    """`user passwd` writes a new hash (new salt even for the same password)."""
    cache = CredentialCache(Clock(), 3600)
    cache.remember("bob@a.test", cache.digest("bob@a.test", "$argon2id$old", "pw"))
    assert not remembered(cache, "bob@a.test", "$argon2id$new", "pw")


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache = CredentialCache(clock, 60)
    cache.remember("bob@a.test", cache.digest("bob@a.test", "h", "pw"))
    clock.now += 59.9
    assert remembered(cache, "bob@a.test", "h", "pw")
    clock.now += 0.1
    assert not remembered(cache, "bob@a.test", "h", "pw")
    assert len(cache) == 0  # an expired entry is dropped when met


def test_hits_do_not_extend_the_age() -> None:
    """The age counts from the argon2 verify, not from the last use."""
    clock = Clock()
    cache = CredentialCache(clock, 60)
    cache.remember("bob@a.test", cache.digest("bob@a.test", "h", "pw"))
    for _ in range(5):
        clock.now += 11
        assert remembered(cache, "bob@a.test", "h", "pw")
    clock.now += 11
    assert not remembered(cache, "bob@a.test", "h", "pw")


def test_ttl_zero_disables() -> None:
    cache = CredentialCache(Clock(), 0)
    cache.remember("bob@a.test", cache.digest("bob@a.test", "h", "pw"))
    assert len(cache) == 0
    assert not remembered(cache, "bob@a.test", "h", "pw")


def test_size_is_bounded_least_recently_used_first() -> None:
    cache = CredentialCache(Clock(), 3600, max_entries=3)
    for name in "abc":
        cache.remember(name, cache.digest(name, "h", "pw"))
    assert remembered(cache, "a", "h", "pw")  # a is now the most recently used
    cache.remember("d", cache.digest("d", "h", "pw"))
    assert len(cache) == 3
    assert not remembered(cache, "b", "h", "pw")
    assert all(remembered(cache, n, "h", "pw") for n in "acd")


def test_forget_missing_drops_departed_accounts() -> None:
    cache = CredentialCache(Clock(), 3600)
    for name in ("a@x", "b@x", "c@x"):
        cache.remember(name, cache.digest(name, "h", "pw"))
    assert cache.forget_missing(["a@x", "c@x", "z@x"]) == 1
    assert not remembered(cache, "b@x", "h", "pw")
    assert remembered(cache, "a@x", "h", "pw") and remembered(cache, "c@x", "h", "pw")


def test_digest_is_keyed_per_process() -> None:
    """Two caches (two processes) give different digests for the same input, so a digest
    seen in one is no use against another, and no table of precomputed digests exists."""
    one, two = CredentialCache(Clock(), 60), CredentialCache(Clock(), 60)
    assert one.digest("bob@a.test", "h", "pw") != two.digest("bob@a.test", "h", "pw")
    same_key = CredentialCache(Clock(), 60, key=b"k" * 32)
    again = CredentialCache(Clock(), 60, key=b"k" * 32)
    assert same_key.digest("bob@a.test", "h", "pw") == again.digest("bob@a.test", "h", "pw")


def test_parts_cannot_be_shifted_between_fields() -> None:
    cache = CredentialCache(Clock(), 60)
    assert cache.digest("bob@a.test", "h", "xpw") != cache.digest("bob@a.test", "hx", "pw")


def test_the_password_is_never_stored() -> None:
    password = "Pl41ntext-M4rker-" + "q" * 20
    cache = CredentialCache(Clock(), 3600)
    cache.remember("bob@a.test", cache.digest("bob@a.test", "h", password))
    gc.collect()
    stored = repr(cache.__dict__) + repr(list(cache._entries.items()))
    assert password not in stored
    assert password.encode() not in b"".join(d for d, _ in cache._entries.values())
    assert all(len(d) == 32 for d, _ in cache._entries.values())  # an HMAC-SHA256, nothing more
