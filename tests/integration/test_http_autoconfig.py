"""Client autoconfig and MTA-STS for two hosted domains, fetched the way clients do."""

from __future__ import annotations

import plistlib
import subprocess
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.conftest import Daisy, require_tool
from tests.integration.http_helpers import with_http

CLIENT_HOST = "mail.daisy.test"  # the name `init --hostname` put in the certificate


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daisy]:
    d = Daisy(tmp_path_factory.mktemp("http-autoconfig") / "daisy")
    d.init()
    with_http(d, tls=True)
    d.set_config("[http.mta_sts]", "mode", '"enforce"')
    d.set_config("[http.mta_sts]", "mx", '["mx1.daisy.test", "mx2.daisy.test"]')
    for domain in ("a.test", "b.test"):
        d.cli("domain", "add", domain)
    d.start()
    yield d
    d.stop()


def curl(d: Daisy, host: str, path: str, *, tls: bool = False) -> tuple[int, str]:
    """curl as a client resolving host to this server (no Host header trickery)."""
    exe = require_tool("curl")
    port = d.ports["https" if tls else "http"]
    scheme = "https" if tls else "http"
    res = subprocess.run(
        [
            exe, "-sS", "-k", "--resolve", f"{host}:{port}:127.0.0.1",
            "-w", "\n%{http_code}", f"{scheme}://{host}:{port}{path}",
        ],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    body, _, code = res.stdout.decode().rpartition("\n")  # bytes: keep the CRLFs
    return int(code), body


def servers(xml_text: str) -> list[dict[str, str]]:
    root = ET.fromstring(xml_text)
    found = []
    for el in root.iter():
        if el.tag in ("incomingServer", "outgoingServer"):
            found.append({"type": el.get("type", ""), **{c.tag: c.text or "" for c in el}})
    return found


@pytest.mark.parametrize("domain", ["a.test", "b.test"])
def test_thunderbird_autoconfig_host(server: Daisy, domain: str) -> None:
    code, body = curl(
        server, f"autoconfig.{domain}", f"/mail/config-v1.1.xml?emailaddress=someone@{domain}"
    )
    assert code == 200, body
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    assert root.find("emailProvider/domain").text == domain  # type: ignore[union-attr]
    got = servers(body)
    assert {(s["type"], s["port"], s["socketType"]) for s in got} == {
        ("imap", str(server.ports["imaps"]), "SSL"),
        ("imap", str(server.ports["imap"]), "STARTTLS"),
        ("pop3", str(server.ports["pop3s"]), "SSL"),
        ("pop3", str(server.ports["pop3"]), "STARTTLS"),
        ("smtp", str(server.ports["submissions"]), "SSL"),
        ("smtp", str(server.ports["submission"]), "STARTTLS"),
    }
    for s in got:
        assert s["hostname"] == CLIENT_HOST
        assert s["username"] == "%EMAILADDRESS%"
        assert s["authentication"] == "password-cleartext"


def test_thunderbird_well_known_over_https(server: Daisy) -> None:
    code, body = curl(
        server,
        "b.test",
        "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=x%40b.test",
        tls=True,
    )
    assert code == 200
    assert ET.fromstring(body).find("emailProvider/domain").text == "b.test"  # type: ignore[union-attr]


def test_autoconfig_never_echoes_the_host_header(server: Daisy) -> None:
    code, body = curl(server, "autoconfig.evil.test", "/mail/config-v1.1.xml?emailaddress=u@a.test")
    assert code == 200
    assert "evil" not in body
    assert {s["hostname"] for s in servers(body)} == {CLIENT_HOST}
    # An unhosted domain, by address or by host name, gets nothing.
    assert (
        curl(server, "autoconfig.a.test", "/mail/config-v1.1.xml?emailaddress=u@c.test")[0] == 404
    )
    assert curl(server, "autoconfig.evil.test", "/mail/config-v1.1.xml")[0] == 404
    assert curl(server, "autoconfig.a.test", "/mail/config-v1.1.xml")[0] == 200


def _post(server: Daisy, path: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}{path}",
        data=body,
        headers={"Content-Type": "text/xml"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


OUTLOOK_REQUEST = """<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>{address}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""


def test_outlook_autodiscover(server: Daisy) -> None:
    body = OUTLOOK_REQUEST.format(address="Jane@B.test").encode()
    code, out = _post(server, "/autodiscover/autodiscover.xml", body)
    assert code == 200, out
    ns = {"r": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}
    root = ET.fromstring(out)
    protocols = root.findall(".//r:Protocol", ns)
    kinds = [p.find("r:Type", ns).text for p in protocols]  # type: ignore[union-attr]
    assert kinds == ["IMAP", "IMAP", "POP3", "POP3", "SMTP", "SMTP"]
    for p in protocols:
        assert p.find("r:Server", ns).text == CLIENT_HOST  # type: ignore[union-attr]
        assert p.find("r:LoginName", ns).text == "Jane@b.test"  # type: ignore[union-attr]
    ports = [p.find("r:Port", ns).text for p in protocols]  # type: ignore[union-attr]
    assert ports[0] == str(server.ports["imaps"])
    assert ports[4] == str(server.ports["submissions"])
    unknown = OUTLOOK_REQUEST.format(address="jane@elsewhere.test").encode()
    assert _post(server, "/autodiscover/autodiscover.xml", unknown)[0] == 404
    assert _post(server, "/autodiscover/autodiscover.xml", b"\xff\x00garbage")[0] == 404


def test_apple_mobileconfig(server: Daisy) -> None:
    url = f"http://127.0.0.1:{server.ports['http']}/apple/mail.mobileconfig?emailaddress=ann@a.test"
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"] == "application/x-apple-aspen-config"
        profile = plistlib.loads(r.read())
    assert profile["PayloadType"] == "Configuration"
    (account,) = profile["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert account["EmailAddress"] == "ann@a.test"
    assert account["EmailAccountType"] == "EmailTypeIMAP"
    assert account["IncomingMailServerHostName"] == CLIENT_HOST
    assert account["IncomingMailServerPortNumber"] == server.ports["imaps"]
    assert account["IncomingMailServerUseSSL"] is True
    assert account["OutgoingMailServerPortNumber"] == server.ports["submissions"]
    assert account["IncomingMailServerUsername"] == "ann@a.test"


@pytest.mark.parametrize("domain", ["a.test", "b.test"])
def test_mta_sts_policy(server: Daisy, domain: str) -> None:
    code, body = curl(server, f"mta-sts.{domain}", "/.well-known/mta-sts.txt", tls=True)
    assert code == 200
    assert body == (
        "version: STSv1\r\nmode: enforce\r\nmx: mx1.daisy.test\r\nmx: mx2.daisy.test\r\n"
        "max_age: 604800\r\n"
    )


def test_mta_sts_only_for_hosted_domains(server: Daisy) -> None:
    assert curl(server, "mta-sts.other.test", "/.well-known/mta-sts.txt", tls=True)[0] == 404
    assert curl(server, "a.test", "/.well-known/mta-sts.txt", tls=True)[0] == 404
