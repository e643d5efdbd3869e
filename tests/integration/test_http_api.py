"""The admin API: tokens made by the CLI, the same validation as the CLI, no 5xx ever."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daisy
from tests.integration.http_helpers import with_http


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = Daisy(tmp_path_factory.mktemp("http-api") / "daisy")
    d.init()
    with_http(d)
    d.set_config("[http]", "api", "true")
    # Mail for far.test waits in the queue: its route is a closed port.
    text = d.config.read_text().replace(
        "[queue.routes]", '[queue.routes]\n"far.test" = "127.0.0.1:9"', 1
    )
    d.config.write_text(text)
    d.cli("domain", "add", "example.test")
    d.add_user("demo@example.test", "demo-pw")
    d.start()
    yield d
    d.stop()


def new_token(d: Daisy, *args: str) -> str:
    out = d.cli("token", "create", *args).stdout
    token = out.strip().splitlines()[-1]
    assert token.startswith("dm_") and " " not in token
    return token


@pytest.fixture(scope="module")
def token(server: Daisy) -> str:
    return new_token(server, "--note", "tests")


def call(
    d: Daisy, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{d.ports['http']}/api/v1{path}", data=data, method=method
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_no_token_no_access(server: Daisy, token: str) -> None:
    assert call(server, "GET", "/domains")[0] == 401
    assert call(server, "GET", "/domains", token="dm_nope_nope")[0] == 401
    assert call(server, "GET", "/domains", token=token[:-2])[0] == 401
    assert call(server, "GET", "/domains", token=token)[0] == 200


def test_token_is_stored_hashed_and_revocable(server: Daisy) -> None:
    t = new_token(server, "--read-only")
    token_id = t.split("_")[1]
    listing = server.cli("token", "list", "--json").stdout
    assert token_id in listing and t not in listing
    db = (server.root / "daisymail.db").read_bytes()
    secret = t.split("_", 2)[2]  # dm_ID_SECRET; the urlsafe secret may hold "_" itself
    assert secret.encode() not in db
    assert call(server, "GET", "/domains", token=t)[0] == 200
    server.cli("token", "revoke", token_id)
    assert call(server, "GET", "/domains", token=t)[0] == 401


def test_read_only_token_cannot_write(server: Daisy) -> None:
    ro = new_token(server, "--read-only")
    status, body = call(server, "POST", "/domains", {"name": "ro.test"}, token=ro)
    assert status == 403 and body["field"] == "Authorization"
    assert call(server, "GET", "/users", token=ro)[0] == 200


def test_a_user_made_over_the_api_can_send(server: Daisy, token: str) -> None:
    assert call(server, "POST", "/domains", {"name": "api.test"}, token)[0] == 201
    status, user = call(
        server, "POST", "/users", {"address": "ann@api.test", "password": "s3cret"}, token
    )
    assert status == 201
    assert user == {"address": "ann@api.test", "mailbox": "ann.api.test"}
    status, users = call(server, "GET", "/users?domain=api.test", token=token)
    assert users == [{"address": "ann@api.test", "mailbox": "ann.api.test"}]
    assert "password" not in json.dumps(users) and "argon2" not in json.dumps(users)
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.starttls()
        s.login("ann@api.test", "s3cret")
    path = "/users/ann@api.test/password"
    assert call(server, "PUT", path, {"password": "n3w"}, token)[0] == 200
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.starttls()
        s.login("ann@api.test", "n3w")
    # The CLI sees what the API did.
    assert "ann@api.test" in server.cli("user", "list", "api.test").stdout


def test_bad_input_names_the_field(server: Daisy, token: str) -> None:
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/users", {"address": "not-an-address", "password": "x"}, 400, "address"),
        ("POST", "/users", {"address": "x@nowhere.test", "password": "x"}, 404, "address"),
        ("POST", "/users", {"address": "y@example.test"}, 400, "password"),
        ("POST", "/users", {"address": "y@example.test", "password": 5}, 400, "password"),
        ("POST", "/users", {"address": "y@example.test", "password": ""}, 400, "password"),
        ("POST", "/users", {"address": "z@example.test", "password": "p", "x": 1}, 400, "x"),
        ("POST", "/users", [1, 2], 400, "body"),
        ("POST", "/aliases", {"pattern": "@@example.test", "target": "x"}, 400, "pattern"),
        ("POST", "/aliases", {"pattern": "a@example.test", "target": "nobox"}, 404, "target"),
        ("POST", "/relays", {"entry": "10.0.0.0/99"}, 400, "entry"),
        ("POST", "/mailboxes", {"name": "../etc"}, 400, "name"),
        ("POST", "/domains", {"name": "example.test"}, 409, "name"),
        ("PATCH", "/domains/example.test", {}, 400, "fallback"),
        ("DELETE", "/domains/example.test", None, 409, "name"),
        ("GET", "/queue/nonexistent", None, 404, "id"),
        ("GET", "/queue/..%2Fenv", None, 400, "id"),
        ("GET", "/resolve?address=", None, 400, "address"),
        ("GET", "/resolve?address=a@b.test&client_ip=nope", None, 400, "client_ip"),
    ]
    for method, path, body, status, field in cases:
        got, answer = call(server, method, path, body, token)
        assert (got, answer.get("field")) == (status, field), (method, path, body, answer)
        assert isinstance(answer["error"], str) and "Traceback" not in answer["error"]


def test_the_cli_refuses_what_the_api_refuses(server: Daisy, token: str) -> None:
    res = server.cli("alias", "add", "@@example.test", "x", check=False)
    status, body = call(
        server, "POST", "/aliases", {"pattern": "@@example.test", "target": "x"}, token
    )
    assert res.returncode == 2 and status == 400
    assert body["error"] in res.stderr


def test_mailbox_quota_over_the_api_and_the_cli(server: Daisy, token: str) -> None:
    box = "demo.example.test"
    status, shown = call(server, "PATCH", f"/mailboxes/{box}", {"quota": "20K"}, token)
    assert status == 200, shown
    assert shown["quota"] == 20480 and shown["quota_default"] is False
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("a@example.net", ["demo@example.test"], b"Subject: q\r\n\r\n" + b"x" * 8000)
        assert s.mail("a@example.net", ["SIZE=15000"])[0] == 250
        assert s.rcpt("demo@example.test")[0] == 452  # 8K used + 15K > 20K
    status, boxes = call(server, "GET", "/mailboxes", token=token)
    (listed,) = [b for b in boxes if b["name"] == box]
    assert listed["quota"] == 20480 and 8000 < listed["used"] < 9000
    assert call(server, "GET", f"/mailboxes/{box}", token=token)[1] == listed
    # the CLI shows and sets the same thing
    cli = json.loads(server.cli("mailbox", "list", box, "--json").stdout)
    assert cli == [listed]
    assert "20K" in server.cli("mailbox", "list", box).stdout
    status, shown = call(server, "PATCH", f"/mailboxes/{box}", {"quota": 1048576}, token)
    assert status == 200 and shown["quota"] == 1048576
    assert "1M" in server.cli("mailbox", "list", box).stdout
    server.cli("mailbox", "set", box, "--quota", "0")
    assert call(server, "GET", f"/mailboxes/{box}", token=token)[1]["quota"] == 0
    status, shown = call(server, "PATCH", f"/mailboxes/{box}", {"quota": "default"}, token)
    assert status == 200 and shown["quota_default"] is True and shown["quota"] == 0
    # bad input: a clear 400 naming the field, the same words as the CLI
    for bad in ("lots", "-1", "", 1.5, True, -1, [1], {"a": 1}):
        status, answer = call(server, "PATCH", f"/mailboxes/{box}", {"quota": bad}, token)
        assert status == 400 and answer["field"] == "quota", (bad, answer)
    status, answer = call(server, "PATCH", f"/mailboxes/{box}", {"quota": "lots"}, token)
    res = server.cli("mailbox", "set", box, "--quota", "lots", check=False)
    assert res.returncode == 2 and answer["error"] in res.stderr
    assert call(server, "PATCH", f"/mailboxes/{box}", {}, token)[0] == 400
    assert call(server, "PATCH", f"/mailboxes/{box}", {"size": 1}, token)[0] == 400
    status, answer = call(server, "PATCH", "/mailboxes/nosuch", {"quota": "1M"}, token)
    assert status == 404 and answer["field"] == "name"
    assert call(server, "POST", "/mailboxes", {"name": "oldbox", "format": "mbox"}, token)[0] == 201
    status, answer = call(server, "PATCH", "/mailboxes/oldbox", {"quota": "1M"}, token)
    assert status == 409 and "quotas need Maildir" in answer["error"]
    ro = new_token(server, "--read-only")
    assert call(server, "PATCH", f"/mailboxes/{box}", {"quota": "1M"}, ro)[0] == 403


def test_resolve_and_relay_rules(server: Daisy, token: str) -> None:
    status, out = call(server, "GET", "/resolve?address=demo@example.test", token=token)
    assert status == 200 and out["decision"] == "deliver" and out["mailbox"]
    assert call(server, "POST", "/relays", {"entry": "192.0.2.0/24"}, token)[0] == 201
    status, relays = call(server, "GET", "/relays", token=token)
    assert {"pattern": "192.0.2.0/24", "kind": "network"} in relays
    quoted = urllib.parse.quote("192.0.2.0/24", safe="")
    assert call(server, "DELETE", f"/relays/{quoted}", token=token)[0] == 200


def test_queue_over_the_api(server: Daisy, token: str) -> None:
    # A message for a domain routed to a closed port stays queued.
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("demo@example.test", ["x@far.test"], b"Subject: q\r\n\r\nq\r\n")
    status, msgs = call(server, "GET", "/queue", token=token)
    assert status == 200 and len(msgs) == 1
    msg_id = msgs[0]["id"]
    status, shown = call(server, "GET", f"/queue/{msg_id}", token=token)
    assert status == 200 and "Subject: q" in shown["headers"]
    status, res = call(server, "POST", f"/queue/{msg_id}/bounce", token=token)
    assert status == 200 and res == {"id": msg_id, "sender": "demo@example.test", "notified": True}
    assert call(server, "GET", "/queue", token=token)[1] == []
    assert call(server, "GET", f"/queue/{msg_id}", token=token)[0] == 404
    assert call(server, "POST", "/queue/flush", token=token)[0] == 202


def test_openapi_and_schemathesis_find_no_server_error(
    server: Daisy, token: str, tmp_path: Path
) -> None:
    status, schema = call(server, "GET", "/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.")
    exe = Path(sys.executable).with_name("schemathesis")
    assert exe.exists(), "schemathesis is a dev dependency"
    res = subprocess.run(
        [
            str(exe), "run", f"http://127.0.0.1:{server.ports['http']}/api/v1/openapi.json",
            "--checks", "not_a_server_error", "-H", f"Authorization: Bearer {token}",
            "--max-examples", "8", "--workers", "2", "--max-time", "30",
            "--phases", "examples,coverage,fuzzing", "--seed", "1",
        ],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "http.error" not in server.logs()


def test_api_refused_on_a_public_address_without_tls(tmp_path: Path) -> None:
    d = Daisy(tmp_path / "daisy")
    d.init()
    with_http(d)
    d.set_config("[http]", "api", "true")
    d.set_config("[http]", "listen", '["0.0.0.0:1"]')
    res = d.cli("serve", check=False)
    assert res.returncode != 0
    assert "only on loopback" in res.stderr
