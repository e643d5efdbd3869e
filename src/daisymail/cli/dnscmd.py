"""`daisymail dns`: the records a domain needs (`records`) and what is published (`check`)."""

from __future__ import annotations

import asyncio

import click

from daisymail.cli.common import fail, state
from daisymail.dns import from_config
from daisymail.mailauth.keystore import KeyInfo, KeyStore, KeyStoreError, check_name
from daisymail.mailauth.records import check, zone_text


def _domain_and_keys(domain: str) -> tuple[str, list[KeyInfo]]:
    cfg = state().config
    try:
        d = check_name(domain)
        return d, KeyStore(cfg.path(cfg.dkim.dir)).keys(d)
    except KeyStoreError as e:
        fail(str(e))


@click.group("dns")
def dns_group() -> None:
    """DNS records for hosted domains: records, check."""


@dns_group.command()
@click.argument("domain")
def records(domain: str) -> None:
    """Print every record DOMAIN needs, in zone file syntax."""
    d, keys = _domain_and_keys(domain)
    click.echo(zone_text(state().config, d, keys), nl=False)


@dns_group.command("check")
@click.argument("domain")
@click.option("--ip", default="", help="This server's sending address: check SPF and PTR for it.")
def check_(domain: str, ip: str) -> None:
    """Query DOMAIN's records and say what is missing or wrong (exit 1 if anything)."""
    cfg = state().config
    d, keys = _domain_and_keys(domain)
    resolver = from_config(cfg.dns.nameservers, cfg.dns.timeout)
    try:
        findings = asyncio.run(check(cfg, d, keys, resolver, ip))
    except ValueError:
        fail(f"not an IP address: {ip!r}")
    for f in findings:
        click.echo(f"{'ok     ' if f.ok else 'PROBLEM'} {f.what}")
    bad = sum(not f.ok for f in findings)
    if bad:
        fail(f"{bad} problem(s) in the DNS of {d}")
