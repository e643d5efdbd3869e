"""The admin CLI, run as a real process on a real data dir."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import Daisy


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text


def test_init_creates_a_data_dir_that_checks_clean(daisy_dir: Daisy) -> None:
    root = daisy_dir.root
    for p in (
        "daisymail.toml",
        "daisymail.db",
        "tls/cert.pem",
        "tls/key.pem",
        "mail",
        "spool",
        "queue",
    ):
        assert (root / p).exists(), p
    assert (root / "tls/key.pem").stat().st_mode & 0o077 == 0
    res = daisy_dir.cli("check")
    assert res.stdout.strip().endswith("ok")


def test_init_refuses_to_overwrite(daisy_dir: Daisy) -> None:
    res = daisy_dir.cli("init", "--data", str(daisy_dir.root), "--dev", check=False)
    assert res.returncode != 0
    assert "already exists" in res.stderr
    _no_traceback(res.stderr)


def test_domain_lifecycle(daisy_dir: Daisy) -> None:
    daisy_dir.cli("domain", "add", "Acme.COM")
    listed = json.loads(daisy_dir.cli("domain", "list", "--json").stdout)
    assert listed == [
        {
            "name": "acme.com",
            "fallback": False,
            "login_case_sensitive": False,
            "generics": True,
            "origin": "native",
        }
    ]
    daisy_dir.cli("domain", "set", "acme.com", "--fallback", "--login-case", "sensitive")
    (d,) = json.loads(daisy_dir.cli("domain", "list", "acme.com", "--json").stdout)
    assert d["fallback"] is True and d["login_case_sensitive"] is True
    dup = daisy_dir.cli("domain", "add", "acme.com", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    daisy_dir.cli("domain", "remove", "acme.com")
    assert json.loads(daisy_dir.cli("domain", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        ("domain", "add", "bad domain"),
        ("domain", "add", "-x"),
        ("domain", "remove", "nowhere.test"),
        ("domain", "set", "nowhere.test", "--strict"),
        ("mailbox", "add", "Bad/Name"),
        ("mailbox", "add", "ok", "--format", "mh"),
        ("mailbox", "remove", "ghost"),
        ("user", "add", "not-an-address", "--password-stdin"),
        ("user", "add", "x@nowhere.test", "--password-stdin"),
        ("user", "passwd", "ghost@example.test", "--password-stdin"),
        ("user", "remove", "ghost@example.test"),
        ("alias", "add", "x@nowhere.test", "box"),
        ("alias", "add", "x@example.test", "missingbox"),
        ("alias", "add", "nodomain", "box"),
        ("alias", "remove", "ghost@example.test"),
        ("sender", "remove", "ghost"),
        ("relay", "add", "300.1.2.3/40"),
        ("relay", "remove", "never.test"),
        ("resolve", "<<bad"),
        ("nosuchcommand",),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(daisy_dir: Daisy, args: tuple[str, ...]) -> None:
    daisy_dir.cli("domain", "add", "example.test")
    res = daisy_dir.cli(*args, input="pw\n", check=False)
    assert res.returncode != 0, res
    _no_traceback(res.stderr + res.stdout)
    assert res.stderr.strip(), "an error must say what is wrong"
    assert len(res.stderr.strip().splitlines()) <= 4  # click usage errors add a usage line


def test_every_command_has_help(daisy_dir: Daisy) -> None:
    groups = {
        "domain": ("add", "set", "remove", "list"),
        "mailbox": ("add", "remove", "list"),
        "user": ("add", "passwd", "remove", "list"),
        "alias": ("add", "remove", "list"),
        "sender": ("add", "remove", "list"),
        "relay": ("add", "remove", "list"),
    }
    for top in ("init", "serve", "check", "resolve"):
        assert "Usage:" in daisy_dir.cli(top, "--help").stdout
    for group, subs in groups.items():
        for sub in subs:
            assert "Usage:" in daisy_dir.cli(group, sub, "--help").stdout


def test_user_add_creates_login_rule_and_mailbox(daisy_dir: Daisy) -> None:
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("John@example.test", "s3cret")
    users = json.loads(daisy_dir.cli("user", "list", "--json").stdout)
    assert users == [{"address": "John@example.test", "mailbox": "john.example.test"}]
    boxes = json.loads(daisy_dir.cli("mailbox", "list", "--json").stdout)
    assert [b["name"] for b in boxes] == ["john.example.test"]
    rules = json.loads(daisy_dir.cli("alias", "list", "example.test", "--json").stdout)
    assert rules == [{"pattern": "john@example.test", "target": "john.example.test"}]
    # The password is stored as an argon2id hash, never in the clear.
    db = sqlite3.connect(daisy_dir.root / "daisymail.db")
    (stored,) = db.execute("select password_hash from logins").fetchone()
    assert stored.startswith("$argon2id$") and "s3cret" not in stored
    dup = daisy_dir.cli(
        "user", "add", "john@example.test", "--password-stdin", input="x\n", check=False
    )
    assert dup.returncode != 0 and "already exists" in dup.stderr
    daisy_dir.cli("user", "passwd", "john@example.test", "--password-stdin", input="new\n")
    (after,) = db.execute("select password_hash from logins").fetchone()
    assert after != stored and after.startswith("$argon2id$")
    daisy_dir.cli("user", "remove", "john@example.test")
    assert json.loads(daisy_dir.cli("user", "list", "--json").stdout) == []
    assert json.loads(daisy_dir.cli("alias", "list", "--json").stdout) == []


def test_user_add_without_a_terminal_needs_password_stdin(daisy_dir: Daisy) -> None:
    daisy_dir.cli("domain", "add", "example.test")
    res = daisy_dir.cli("user", "add", "a@example.test", input="", check=False)
    assert res.returncode != 0
    assert "--password-stdin" in res.stderr


def test_alias_rules_and_resolve(daisy_dir: Daisy) -> None:
    daisy_dir.cli("domain", "add", "acme.com")
    daisy_dir.cli("alias", "add", "john@acme.com", "johnacme", "--create-mailbox")
    daisy_dir.cli("alias", "add", "info@acme.com", "jane@elsewhere.example")
    daisy_dir.cli("alias", "add", "joe@acme.com", "error:nouser 550 No such user here")
    daisy_dir.cli("alias", "add", "sales+*@acme.com", "johnacme+%2")

    def resolve(addr: str, *extra: str) -> dict[str, object]:
        out: dict[str, object] = json.loads(daisy_dir.cli("resolve", addr, "--json", *extra).stdout)
        return out

    r = resolve("John@ACME.com")
    assert r["decision"] == "deliver" and r["mailbox"] == "johnacme"
    assert r["rule"] == "john@acme.com"
    assert r["relay"]["allowed"] is True  # type: ignore[index]
    r = resolve("info@acme.com")
    assert r["decision"] == "forward" and r["forward_to"] == "jane@elsewhere.example"
    r = resolve("joe@acme.com")
    assert r["decision"] == "reject"
    assert r["reply"] == "550 5.0.0 <joe@acme.com>... No such user here"
    r = resolve("sales+q1@acme.com")
    assert r["decision"] == "deliver" and r["mailbox"] == "johnacme" and r["detail"] == "q1"
    r = resolve("nobody@acme.com")  # strict domain: no catch-all, no fallback
    assert r["decision"] == "reject" and str(r["reply"]).startswith("550 5.1.1")
    r = resolve("someone@remote.test")
    assert r["decision"] == "reject" and "Relaying denied" in str(r["reply"])
    assert r["relay"]["allowed"] is False  # type: ignore[index]
    r = resolve("someone@remote.test", "--client-ip", "127.0.0.1")
    assert r["decision"] == "relay" and r["relay"]["allowed"] is True  # type: ignore[index]
    r = resolve("someone@remote.test", "--authenticated")
    assert r["decision"] == "relay"
    text = daisy_dir.cli("resolve", "john@acme.com").stdout
    assert "decision: deliver to mailbox johnacme" in text


def test_sender_and_relay_rules(daisy_dir: Daisy) -> None:
    daisy_dir.cli("sender", "add", "johnacme", "john@acme.com")
    assert json.loads(daisy_dir.cli("sender", "list", "--json").stdout) == [
        {"pattern": "johnacme", "target": "john@acme.com"}
    ]
    daisy_dir.cli("relay", "add", "192.168.5")
    daisy_dir.cli("relay", "add", "friend.example")
    rules = json.loads(daisy_dir.cli("relay", "list", "--json").stdout)
    assert {"pattern": "192.168.5.0/24", "kind": "network"} in rules
    assert {"pattern": "friend.example", "kind": "domain"} in rules
    r = json.loads(daisy_dir.cli("resolve", "x@a.friend.example", "--json").stdout)
    assert r["relay"]["allowed"] is True
    r = json.loads(
        daisy_dir.cli("resolve", "x@far.test", "--client-ip", "192.168.5.7", "--json").stdout
    )
    assert r["relay"]["allowed"] is True
    r = json.loads(
        daisy_dir.cli("resolve", "x@far.test", "--client-ip", "192.168.50.7", "--json").stdout
    )
    assert r["relay"]["allowed"] is False
    daisy_dir.cli("relay", "remove", "192.168.5")
    daisy_dir.cli("sender", "remove", "johnacme")
    assert json.loads(daisy_dir.cli("sender", "list", "--json").stdout) == []


def test_check_reports_problems(daisy_dir: Daisy) -> None:
    daisy_dir.cli("domain", "add", "example.test")
    daisy_dir.add_user("a@example.test", "pw")
    (daisy_dir.root / "spool").rmdir()
    res = daisy_dir.cli("check", check=False)
    assert res.returncode != 0
    assert "spool dir" in res.stdout
    _no_traceback(res.stdout + res.stderr)


def test_bad_config_is_one_line(daisy_dir: Daisy) -> None:
    daisy_dir.config.write_text(daisy_dir.config.read_text() + "\n[limits]\nbogus = 1\n")
    res = daisy_dir.cli("domain", "list", check=False)
    assert res.returncode != 0
    _no_traceback(res.stderr)
    assert "daisymail.toml" in res.stderr


def test_serve_with_missing_certificate_says_why(daisy_dir: Daisy) -> None:
    (daisy_dir.root / "tls/cert.pem").unlink()
    res = daisy_dir.cli("serve", check=False)
    assert res.returncode != 0
    _no_traceback(res.stderr)
    assert "cert.pem" in res.stderr
