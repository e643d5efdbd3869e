"""`daisymail dkim`: make, list and rotate the DKIM signing keys of hosted domains.

Keys are files under ``[dkim] dir`` (see daisymail.mailauth.keystore); a domain is
signed for as soon as it has an active key, so publish the printed TXT record first
(or right away). Rotation makes the new key now and lets it sign after
``[dkim] rotate_delay`` seconds, time enough to publish its record.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from daisymail.cli.common import fail, json_option, print_json, print_table, state
from daisymail.mailauth.dkim import zone_txt
from daisymail.mailauth.keystore import (
    ALGORITHMS,
    KeyInfo,
    KeyStore,
    KeyStoreError,
    default_selector,
    unique_selector,
)


def _store() -> KeyStore:
    cfg = state().config
    return KeyStore(cfg.path(cfg.dkim.dir))


def _record(k: KeyInfo) -> str:
    return zone_txt(f"{k.selector}._domainkey.{k.domain}", k.record)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


@click.group()
def dkim() -> None:
    """DKIM signing keys: keygen, list, rotate."""


@dkim.command()
@click.argument("domain")
@click.option("--selector", "-s", default=None, help="Selector (default: dYYYYMMDD + r/e).")
@click.option(
    "--algorithm",
    "-a",
    type=click.Choice([*ALGORITHMS, "both"]),
    default="both",
    show_default=True,
    help="Key type; both = one RSA-2048 and one Ed25519 key, each with its own selector.",
)
def keygen(domain: str, selector: str | None, algorithm: str) -> None:
    """Make a key for DOMAIN and print the DNS record to publish."""
    store = _store()
    algorithms = list(ALGORITHMS) if algorithm == "both" else [algorithm]
    try:
        taken = {k.selector for k in store.keys(domain)}
        made = []
        for alg in algorithms:
            if selector is None:
                sel = unique_selector(f"{default_selector()}{alg[0]}", taken)
            else:
                sel = selector if len(algorithms) == 1 else f"{selector}-{alg}"
            taken.add(sel)
            made.append(store.generate(domain, sel, alg))
    except KeyStoreError as e:
        fail(str(e))
    click.echo(f"; publish in the zone of {made[0].domain}; signing starts now")
    for k in made:
        click.echo(_record(k))


@dkim.command("list")
@click.argument("domain", required=False)
@json_option
def list_(domain: str | None, as_json: bool) -> None:
    """Keys with their state (active, pending, retired) and DNS records."""
    try:
        keys = _store().keys(domain)
    except KeyStoreError as e:
        fail(str(e))
    if as_json:
        print_json(keys)
        return
    rows = [
        (k.domain, k.selector, k.algorithm, k.state, _when(k.created), _when(k.not_before))
        for k in keys
    ]
    print_table(rows, ("DOMAIN", "SELECTOR", "ALGORITHM", "STATE", "CREATED", "SIGNS FROM"))


@dkim.command()
@click.argument("domain")
@click.option(
    "--delay",
    type=click.IntRange(min=0),
    default=None,
    help="Seconds until the new keys sign and the old retire (default: [dkim] rotate_delay).",
)
def rotate(domain: str, delay: int | None) -> None:
    """New keys for DOMAIN that replace the current ones after a delay."""
    cfg = state().config
    wait = cfg.dkim.rotate_delay if delay is None else delay
    try:
        made = _store().rotate(domain, wait)
    except KeyStoreError as e:
        fail(str(e))
    when = _when(time.time() + wait)
    click.echo(f"; publish now; these keys sign from {when} UTC and the old ones retire then.")
    click.echo("; keep the old records published a week longer for mail still in transit.")
    for k in made:
        click.echo(_record(k))
