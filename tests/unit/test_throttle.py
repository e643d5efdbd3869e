"""AuthThrottle: delays grow with failures per client and per account, within a window."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from daisymail.throttle import AuthThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs: Any) -> tuple[AuthThrottle, Clock]:
    clock = Clock()
    return AuthThrottle(clock, **kwargs), clock


def test_no_failures_no_delay() -> None:
    throttle, _ = make()
    assert throttle.delay("192.0.2.1", "john@acme.com") == 0.0


def test_delay_doubles_and_is_capped() -> None:
    throttle, _ = make(base_delay=1.0, max_delay=10.0)
    delays = []
    for _ in range(6):
        throttle.failure("192.0.2.1", "john@acme.com")
        delays.append(throttle.delay("192.0.2.1", "john@acme.com"))
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_counted_per_ip_and_per_account() -> None:
    throttle, _ = make()
    for user in ("a", "b", "c"):
        throttle.failure("192.0.2.1", f"{user}@acme.com")
    assert throttle.delay("192.0.2.1", "fresh@acme.com") == 4.0
    assert throttle.delay("198.51.100.7", "fresh@acme.com") == 0.0
    for ip in ("198.51.100.1", "198.51.100.2"):
        throttle.failure(ip, "john@acme.com")
    assert throttle.delay("203.0.113.5", "john@acme.com") == 2.0


def test_account_names_fold_case() -> None:
    throttle, _ = make()
    throttle.failure("192.0.2.1", "John@acme.com")
    assert throttle.delay("198.51.100.1", "JOHN@ACME.COM") == 1.0


def test_failures_expire_after_window() -> None:
    throttle, clock = make(window=60.0)
    throttle.failure("192.0.2.1", "john@acme.com")
    clock.now += 30
    throttle.failure("192.0.2.1", "john@acme.com")
    assert throttle.delay("192.0.2.1", "john@acme.com") == 2.0
    clock.now += 31
    assert throttle.delay("192.0.2.1", "john@acme.com") == 1.0
    clock.now += 30
    assert throttle.delay("192.0.2.1", "john@acme.com") == 0.0


def test_success_clears_account_but_not_client() -> None:
    throttle, _ = make()
    throttle.failure("192.0.2.1", "john@acme.com")
    throttle.failure("192.0.2.1", "john@acme.com")
    throttle.success("192.0.2.1", "john@acme.com")
    assert throttle.delay("198.51.100.1", "john@acme.com") == 0.0
    assert throttle.delay("192.0.2.1", "mary@acme.com") == 2.0


def test_empty_keys_are_not_counted() -> None:
    throttle, _ = make()
    throttle.failure("", "")
    throttle.failure("192.0.2.1", "")
    assert throttle.delay("", "anyone") == 0.0
    assert throttle.delay("198.51.100.1", "") == 0.0
    assert throttle.delay("192.0.2.1", "") == 1.0


def test_memory_is_bounded_and_oldest_forgotten() -> None:
    throttle, _ = make(max_entries=3)
    for i in range(5):
        throttle.failure(f"10.0.0.{i}", f"user{i}")
    assert throttle.delay("10.0.0.0", "user0") == 0.0
    assert throttle.delay("10.0.0.1", "user1") == 0.0
    assert throttle.delay("10.0.0.4", "user4") == 1.0


def test_recent_failure_keeps_entry_alive() -> None:
    throttle, _ = make(max_entries=2)
    throttle.failure("10.0.0.1", "")
    throttle.failure("10.0.0.2", "")
    throttle.failure("10.0.0.1", "")
    throttle.failure("10.0.0.3", "")
    assert throttle.delay("10.0.0.1", "") == 2.0
    assert throttle.delay("10.0.0.2", "") == 0.0


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.floats(0, 100)), max_size=200))
def test_delay_always_within_bounds(events: list[tuple[int, int, float]]) -> None:
    throttle, clock = make(max_entries=8, max_delay=30.0)
    for ip, account, step in events:
        clock.now += step
        throttle.failure(f"ip{ip}", f"a{account}")
        delay = throttle.delay(f"ip{ip}", f"a{account}")
        assert 1.0 <= delay <= 30.0
