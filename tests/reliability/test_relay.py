"""Open relay: the classic tricks, from outside and from a relay network, plus nmap."""

from __future__ import annotations

import json
import re
import smtplib
import subprocess
import time

from tests.conftest import Daisy, require_tool
from tests.integration.smtp_sink import Sink
from tests.reliability.conftest import report

# Addresses whose final domain is hosted here, dressed up to be relayed elsewhere.
LOCAL_LOOKING = [
    "victim%remote.test@example.test",
    "victim%remote.test%example.test@example.test",
    "remote.test!victim@example.test",
    "example.test!remote.test!victim@example.test",
    '"victim@remote.test"@example.test',
    '"victim%remote.test"@example.test',
    '"remote.test!victim"@example.test',
    "victim\\@remote.test@example.test",
    "@remote.test:victim@example.test",
    "@remote.test,@other.test:victim@example.test",
    "victim%remote.test@EXAMPLE.TEST",
    "victim%remote.test@example.test.",
    "victim%remote.test@mail.daisy.test",
    "victim%remote.test@localhost",
    "victim%remote.test@[127.0.0.1]",
    "remote.test!victim@[127.0.0.1]",
]
# Addresses that would go elsewhere: only a relay network or a logged-in user may.
FOREIGN = [
    "victim@remote.test",
    "victim@REMOTE.TEST",
    "victim@Remote.Test.",
    "victim@remote.test.",
    "remote.test!victim",
    "victim%remote.test",
    '"victim@remote.test"',
    "@example.test:victim@remote.test",
    "@example.test,@mail.daisy.test:victim@remote.test",
    "victim@remote.test@example.test",
    "victim@example.test@remote.test",
    "victim@[127.0.0.1]",
    "victim@[127.0.0.2]",
    "victim@[IPv6:::1]",
    "victim@[10.0.0.1]",
    "victim@sub.example.test",
    "victim@example.test.remote.test",
    "victim@unknown-local.test",
    "postmaster@remote.test",
    "victim@remote.test ",
    "victim@remote.test\t",
]
SENDERS = ["someone@sender.test", "", "demo@example.test", "postmaster@example.test"]


def relay_server(daisy: Daisy, sink_port: int) -> None:
    text = daisy.config.read_text().replace(
        "[queue.routes]",
        f'[queue.routes]\n"remote.test" = "127.0.0.1:{sink_port}"\n'
        f'"unknown-local.test" = "127.0.0.1:{sink_port}"',
        1,
    )
    daisy.config.write_text(text)
    daisy.cli("domain", "add", "example.test")
    daisy.add_user("demo@example.test", "demo-pw")
    daisy.start()


def run_battery(daisy: Daisy, source: str, rcpts: list[str]) -> tuple[int, list[str]]:
    """Every recipient with every sender, a whole message each time, each on a
    connection of its own (refusals count towards the error limit); (tried, accepted)."""
    accepted = []
    tried = 0
    for sender in SENDERS:
        for rcpt in rcpts:
            tried += 1
            with smtplib.SMTP(
                "127.0.0.1", daisy.ports["smtp"], timeout=20, source_address=(source, 0)
            ) as s:
                s.ehlo("relay-test.example")
                assert s.mail(sender)[0] == 250
                code, _ = s.docmd(f"RCPT TO:<{rcpt}>")
                if code == 250:
                    accepted.append(rcpt)
                    reply = s.data(b"Subject: relay test\r\n\r\nrelay " + rcpt.encode())
                    assert reply[0] == 250, (rcpt, reply)
    return tried, accepted


def queued(daisy: Daisy) -> list[str]:
    entries = json.loads(daisy.cli("queue", "list", "--json").stdout)
    return [r["address"] for e in entries for r in e["recipients"]]


def test_nothing_relays_from_outside(daisy_dir: Daisy, sink: Sink) -> None:
    relay_server(daisy_dir, sink.port)
    tried, accepted = run_battery(daisy_dir, "127.0.0.2", LOCAL_LOOKING + FOREIGN)
    time.sleep(1.5)
    relayed = queued(daisy_dir) + [r for _, rcpts, _ in sink.messages for r in rcpts]
    report(
        "relay.outside",
        tried=tried,
        accepted_for_local_delivery=len(accepted),
        relayed=len(relayed),
    )
    assert relayed == []
    assert list((daisy_dir.root / "queue/env").glob("*")) == []
    # What was accepted went to a hosted mailbox, not out.
    assert all(re.search(r"@(example\.test|\[127\.0\.0\.1\])\.?$", a, re.I) for a in accepted)


def test_relay_network_relays_only_what_it_names(daisy_dir: Daisy, sink: Sink) -> None:
    relay_server(daisy_dir, sink.port)
    tried, _ = run_battery(daisy_dir, "127.0.0.1", LOCAL_LOOKING)
    time.sleep(1.5)
    relayed = queued(daisy_dir) + [r for _, rcpts, _ in sink.messages for r in rcpts]
    report("relay.trusted_network", tried=tried, relayed=len(relayed))
    assert relayed == []
    # The network may still relay what it plainly asks for.
    with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=20) as s:
        s.sendmail("someone@sender.test", ["victim@remote.test"], b"Subject: ok\r\n\r\nok\r\n")
    deadline = time.monotonic() + 10
    while not sink.messages:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [rcpts for _, rcpts, _ in sink.messages] == [["victim@remote.test"]]


def test_nmap_smtp_open_relay(daisy_dir: Daisy, sink: Sink) -> None:
    """nmap's script only runs against ports 25/465/587 (or a service it detected, which
    is slow), so the server also listens on port 25 of a spare loopback address; with no
    relay networks configured every client is an outsider."""
    nmap = require_tool("nmap")
    host = "127.0.0.9"
    daisy_dir.set_config("[relay]", "networks", "[]")
    daisy_dir.set_config("[limits]", "max_errors", "100")
    daisy_dir.set_config(
        "[listen]", "smtp", f'["127.0.0.1:{daisy_dir.ports["smtp"]}", "{host}:25"]'
    )
    relay_server(daisy_dir, sink.port)
    res = subprocess.run(
        [
            nmap, "-Pn", "-n", "-p", "25", "--script", "smtp-open-relay",
            "--script-args",
            "smtp-open-relay.domain=example.test,smtp-open-relay.to=victim@remote.test,"
            "smtp-open-relay.from=someone@sender.test",
            host,
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = res.stdout
    verdict = re.search(r"Server .*open relay.*", out)
    assert verdict is not None, out
    time.sleep(1.5)
    relayed = queued(daisy_dir) + [r for _, rcpts, _ in sink.messages for r in rcpts]
    report("relay.nmap", verdict=verdict.group(0), relayed=len(relayed))
    assert "doesn't seem to be an open relay" in out, out
    assert relayed == []
