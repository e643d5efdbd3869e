"""export legacy then import legacy gives the same directory, also for a domain that
has a teapop.passwd line but no accounts."""

from __future__ import annotations

from pathlib import Path

from daisymail.directory.legacy.apply import apply_plan
from daisymail.directory.legacy.exporter import export_legacy
from daisymail.directory.legacy.importer import read_legacy
from daisymail.directory.legacy.sources import LegacyPaths
from daisymail.directory.sql import SqlDirectory
from tests.legacy_tree import LegacyTree


def _sql(path: Path) -> SqlDirectory:
    return SqlDirectory(f"sqlite:///{path}", create=True, refresh_interval=0)


def test_a_domain_without_accounts_survives_the_round_trip(tmp_path: Path) -> None:
    tree = LegacyTree(tmp_path / "legacy")
    tree.spool.mkdir(parents=True)
    tree.write("etc/mail/local-host-names", b"acme.com\n")
    tree.teapop(
        "acme.com:*:textfile:S:0:nobody:mail:E/acme.passwd:10:\n"
        "quiet.test:*:textfile:S:0:nobody:mail:E/quiet.passwd:10:\n"
        "empty.test:*:textfile:S:0:nobody:mail:E/empty.passwd:10:\n"
    )
    tree.password_file("acme.passwd", b"john:pw:john\n")
    tree.password_file("empty.passwd", b"")  # quiet.passwd is missing altogether
    first = _sql(tmp_path / "a.db")
    apply_plan(read_legacy(tree.paths), first)
    snap = first.refresh()
    assert {"acme.com", "quiet.test", "empty.test"} <= set(snap.domains)

    out = tmp_path / "out"
    export_legacy(snap, str(out), mail_dir=str(tmp_path / "mail"))
    again = LegacyPaths(str(out), str(out / "teapop.passwd"), str(tree.spool))
    second = _sql(tmp_path / "b.db")
    apply_plan(read_legacy(again), second)
    assert second.refresh() == snap
    assert apply_plan(read_legacy(again), first) == []
    first.close()
    second.close()
