"""Small admin holes: alias patterns no address can match, and mailbox paths that can
never hold mail, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Daisy


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Daisy:
    d = Daisy(tmp_path_factory.mktemp("admin") / "daisy")
    d.init()
    d.cli("domain", "add", "example.test")
    d.cli("mailbox", "add", "bobbox")
    return d


@pytest.mark.parametrize(
    "pattern", ["@@example.test", "a@@example.test", "a b@example.test", "<a>@example.test"]
)
def test_alias_patterns_no_address_can_match_are_refused(admin: Daisy, pattern: str) -> None:
    res = admin.cli("alias", "add", pattern, "bobbox", check=False)
    assert res.returncode != 0 and "bad pattern" in res.stderr, res.stderr
    assert pattern.lower() not in admin.cli("alias", "list").stdout


def test_good_alias_patterns_still_work(admin: Daisy) -> None:
    patterns = ["bob@example.test", "bob+*@example.test", "bob++@example.test", "@example.test"]
    for pattern in patterns:
        admin.cli("alias", "add", pattern, "bobbox")
    listed = admin.cli("alias", "list").stdout
    assert all(p in listed for p in patterns)


def test_check_reports_each_unusable_mailbox_path(daisy_dir: Daisy, tmp_path: Path) -> None:
    d = daisy_dir
    plain = tmp_path / "a-file"
    plain.write_text("not a folder\n")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    d.cli("mailbox", "add", "under", "--format", "mbox", "--path", f"{plain}/bob")
    d.cli("mailbox", "add", "deep", "--format", "maildir", "--path", f"{plain}/x/y/")
    d.cli("mailbox", "add", "dirbox", "--format", "mbox", "--path", str(folder))
    d.cli("mailbox", "add", "filedir", "--format", "maildir", "--path", f"{plain}/")
    d.cli("mailbox", "add", "fine", "--format", "mbox", "--path", str(tmp_path / "new" / "box"))
    res = d.cli("check", check=False)
    assert res.returncode != 0
    problems = [line for line in res.stdout.splitlines() if line.startswith("problem: mailbox")]
    assert len(problems) == 4, res.stdout
    out = "\n".join(problems)
    assert f"mailbox under: {plain}/bob lies under {plain}, which is not a folder" in out
    assert f"mailbox deep: {plain}/x/y lies under {plain}, which is not a folder" in out
    assert f"mailbox dirbox: {folder} is not a regular file" in out
    assert f"mailbox filedir: {plain} is not a folder, so it cannot be a Maildir" in out
    assert "mailbox fine" not in res.stdout
