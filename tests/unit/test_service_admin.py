"""The service layer's refusals: one table, the field each names and how it maps to the
CLI's exit status and the API's HTTP status."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daisymail.directory.sql import SqlDirectory
from daisymail.service.admin import Admin
from daisymail.service.errors import ServiceError


def _admin(folder: Path) -> Admin:
    a = Admin(SqlDirectory(f"sqlite:///{folder / 'd.db'}", create=True))
    a.add_domain("example.test")
    a.add_user("ann@example.test", "pw")  # one password hash: the slow part
    return a


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    """For refusals only: they change nothing, so one directory serves them all."""
    a = _admin(tmp_path_factory.mktemp("service"))
    yield a
    a.directory.close()


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    a = _admin(tmp_path)
    yield a
    a.directory.close()


CASES: list[tuple[str, Callable[[Admin], object], str, str]] = [
    ("bad address", lambda a: a.add_user("no-at-sign", "pw"), "address", "invalid"),
    ("unhosted", lambda a: a.add_user("x@elsewhere.test", "pw"), "address", "not_found"),
    ("duplicate user", lambda a: a.add_user("ANN@example.test", "pw"), "address", "conflict"),
    ("empty password", lambda a: a.add_user("bob@example.test", ""), "password", "invalid"),
    ("newline password", lambda a: a.add_user("bob@example.test", "a\nb"), "password", "invalid"),
    ("bad mailbox", lambda a: a.add_user("bob@example.test", "p", "../x"), "mailbox", "invalid"),
    ("no such user", lambda a: a.set_password("zed@example.test", "p"), "address", "not_found"),
    ("bad domain", lambda a: a.add_domain("a b"), "name", "invalid"),
    ("duplicate domain", lambda a: a.add_domain("Example.TEST"), "name", "conflict"),
    ("nothing to change", lambda a: a.update_domain("example.test"), "fallback", "invalid"),
    ("bad login case", lambda a: a.add_domain("c.test", None, "maybe"), "login_case", "invalid"),
    ("domain in use", lambda a: a.remove_domain("example.test"), "name", "conflict"),
    ("bad format", lambda a: a.add_mailbox("box", "mh"), "format", "invalid"),
    ("bad pattern", lambda a: a.add_alias("@@example.test", "x"), "pattern", "invalid"),
    ("no at", lambda a: a.add_alias("example.test", "x"), "pattern", "invalid"),
    ("empty target", lambda a: a.add_alias("x@example.test", " "), "target", "invalid"),
    ("missing box", lambda a: a.add_alias("x@example.test", "nobox"), "target", "not_found"),
    ("bad relay", lambda a: a.add_relay("10.0.0.0/40"), "entry", "invalid"),
    ("bad sender", lambda a: a.add_sender("a b", "x@example.test"), "pattern", "invalid"),
]


@pytest.mark.parametrize(("what", "call", "field", "kind"), CASES, ids=[c[0] for c in CASES])
def test_refusals_name_the_field(
    shared: Admin, what: str, call: Callable[[Admin], object], field: str, kind: str
) -> None:
    with pytest.raises(ServiceError) as info:
        call(shared)
    assert (info.value.field, info.value.kind) == (field, kind), info.value.message
    assert info.value.exit_code == (2 if kind == "invalid" else 1)
    assert info.value.http_status == {"invalid": 400, "not_found": 404, "conflict": 409}[kind]


def test_a_refused_user_leaves_nothing_behind(admin: Admin) -> None:
    before = admin.snapshot()
    with pytest.raises(ServiceError):
        admin.add_user("bob@example.test", "")
    after = admin.snapshot()
    assert (after.mailboxes, after.logins) == (before.mailboxes, before.logins)


def test_user_round_trip_never_shows_a_hash(admin: Admin) -> None:
    assert admin.list_users() == [{"address": "ann@example.test", "mailbox": "ann.example.test"}]
    admin.set_password("Ann@example.test", "new")
    removed = admin.remove_user("ann@example.test")
    assert removed.mailbox in {b.name for b in admin.list_mailboxes()}
    assert admin.list_aliases() == []
