"""One spool file is one mailbox: teapop's spool directory, symlinks, and drift findings
that name the file and line of every entry involved."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from daisymail.directory.legacy.importer import read_legacy
from daisymail.directory.legacy.sources import LegacyPaths
from tests.legacy_tree import LegacyTree


def moved_tree(root: Path) -> tuple[LegacyTree, Path]:
    """procmail's spool at the default, but teapop.passwd naming another directory."""
    tree = LegacyTree(root)
    tree.spool.mkdir(parents=True)
    teapop_spool = root / "home" / "mail"
    teapop_spool.mkdir(parents=True)
    tree.write("etc/mail/local-host-names", b"acme.com\n")
    tree.write("etc/mail/virtusertable", b"info@acme.com\tbob\n")
    tree.write(
        "etc/teapop.passwd",
        f"acme.com:*:textfile:{teapop_spool}:0:bob:mail:{tree.etc}/acme.passwd:10:\n".encode(),
    )
    tree.write("etc/acme.passwd", b"bob:pw:bob\nann:pw:ann\n")
    return tree, teapop_spool


def test_the_spool_comes_from_teapop_passwd(tmp_path: Path) -> None:
    tree, teapop_spool = moved_tree(tmp_path)
    plan = read_legacy(tree.paths)
    assert {n: b.path for n, b in plan.mailboxes.items()} == {
        "bob": f"{teapop_spool}/bob",
        "ann": f"{teapop_spool}/ann",
    }
    assert [pl.mailbox for pl in plan.logins] == ["bob", "ann"]
    text = "\n".join(map(str, plan.findings))
    assert f"spool directory taken from teapop.passwd: {teapop_spool}" in text
    assert "drift" not in text


def test_an_explicit_spool_dir_shows_the_real_drift(tmp_path: Path) -> None:
    tree, teapop_spool = moved_tree(tmp_path)
    paths = LegacyPaths(tree.paths.sendmail_dir, tree.paths.teapop_passwd, str(tree.spool), False)
    plan = read_legacy(paths)
    assert sorted(b.path for b in plan.mailboxes.values()) == sorted(
        [f"{tree.spool}/bob", f"{teapop_spool}/bob", f"{teapop_spool}/ann"]
    )
    drift = [str(f) for f in plan.findings if "drift" in f.message]
    vut, pw = f"{tree.mail}/virtusertable", f"{tree.etc}/acme.passwd"
    # Every drift finding names the file and line of the entry it is about.
    assert any(d.startswith(f"{vut}:1: warning: drift: info@acme.com delivers to") for d in drift)
    assert any(d.startswith(f"{pw}:1: warning: drift: mail to bob@acme.com goes to") for d in drift)
    assert all(not re.match(r"[^:]*:0:", d) for d in drift), drift


def test_a_symlinked_spool_is_the_same_spool(tmp_path: Path) -> None:
    """Debian: /var/spool/mail -> /var/mail. The two spellings name one file."""
    tree, teapop_spool = moved_tree(tmp_path)
    link = tmp_path / "var-spool-mail"
    os.symlink(teapop_spool, link)
    paths = LegacyPaths(tree.paths.sendmail_dir, tree.paths.teapop_passwd, str(link), False)
    plan = read_legacy(paths)
    assert sorted(plan.mailboxes) == ["ann", "bob"]
    assert not [f for f in plan.findings if "drift" in f.message]


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("target", "virtusertable:2"),  # a target no login reads
        ("login", "acme.passwd:2"),  # a login nothing delivers to
        ("mismatch", "acme.passwd:1"),  # an address and its login reach different files
    ],
)
def test_each_drift_finding_names_file_and_line(tmp_path: Path, kind: str, where: str) -> None:
    tree = LegacyTree(tmp_path)
    tree.spool.mkdir(parents=True)
    tree.write("etc/mail/local-host-names", b"acme.com\n")
    tree.write("etc/mail/virtusertable", b"bob@acme.com\tbobbox\nlost@acme.com\torphan\n")
    tree.teapop("acme.com:*:textfile::0:bob:mail:E/acme.passwd:10:\n")
    tree.write(
        "etc/acme.passwd",
        f"bob:pw:{tree.spool}/bob\nzed:pw:/elsewhere/zed\n".encode(),
    )
    plan = read_legacy(tree.paths)
    texts = {
        "target": [str(f) for f in plan.findings if "orphan" in f.message and "drift" in f.message],
        "login": [str(f) for f in plan.findings if "drift: login zed@acme.com" in f.message],
        "mismatch": [str(f) for f in plan.findings if "drift: mail to bob@acme.com" in f.message],
    }[kind]
    assert len(texts) == 1, plan.findings
    assert f"/{where}: warning: drift" in texts[0]
    if kind == "mismatch":
        assert "virtusertable:1 (bob@acme.com)" in texts[0]
