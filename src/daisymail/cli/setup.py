"""`init` creates a data dir that runs; `check` says what is wrong with one."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import click

from daisymail import config as config_mod
from daisymail.cli.common import fail, state
from daisymail.config import Config, ConfigError
from daisymail.config_template import render
from daisymail.tls import certificate_expiry, make_self_signed

if TYPE_CHECKING:
    from daisymail.directory.model import Snapshot


def prepare_data_dir(cfg: Config) -> None:
    """Create the folders, database and certificate a config points at (idempotent)."""
    for key in (cfg.storage.mail_dir, cfg.storage.spool_dir, cfg.queue.dir):
        cfg.path(key).mkdir(parents=True, exist_ok=True, mode=0o750)
    cert, key_path = cfg.path(cfg.tls.cert), cfg.path(cfg.tls.key)
    if not cert.exists() or not key_path.exists():
        make_self_signed(cert, key_path, cfg.hostname)
    if cfg.directory.backend == "sql":
        from daisymail.directory.sql import SqlDirectory

        SqlDirectory(cfg.database_url, create=True).close()


@click.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data folder (default: ./var with --dev, else /var/lib/daisymail).",
)
@click.option("--hostname", default=None, help="This server's host name (default: the FQDN).")
@click.option(
    "--dev",
    is_flag=True,
    help="Loopback-only listeners on high ports"
    " (2525, 2587, 2465, 2110, 2995, 2143, 2993; HTTP 2080).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
def init(data_dir: str | None, hostname: str | None, dev: bool, force: bool) -> None:
    """Write a commented config to DATA/daisymail.toml and create the data folder."""
    base = Path(data_dir or ("var" if dev else "/var/lib/daisymail"))
    target = base / "daisymail.toml"
    if target.exists() and not force:
        fail(f"{target} already exists (use --force to overwrite it)")
    name = hostname or ("localhost" if dev else socket.getfqdn())
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o750)
        target.write_text(render(hostname=name, dev=dev))
        cfg = config_mod.load(str(target))
        prepare_data_dir(cfg)
    except OSError as e:
        fail(f"cannot create {base}: {e.strerror or e}")
    except ConfigError as e:
        fail(str(e))
    click.echo(f"created {target} (hostname {name}{', development listeners' if dev else ''})")
    click.echo(f"start the server with: daisymail --config {target} serve")


@click.command()
def check() -> None:
    """Check the config, the directory's consistency, paths, permissions and the certificate."""
    st = state()
    cfg = st.config
    problems: list[str] = []
    notes: list[str] = [f"config: {cfg.source}"]
    for label, key in (
        ("mail dir", cfg.storage.mail_dir),
        ("spool dir", cfg.storage.spool_dir),
        ("queue dir", cfg.queue.dir),
    ):
        folder = cfg.path(key)
        if not folder.is_dir():
            problems.append(f"{label} {folder} does not exist (run daisymail init, or create it)")
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(f"{label} {folder} is not writable by uid {os.getuid()}")
    cert = cfg.path(cfg.tls.cert)
    try:
        expires = certificate_expiry(cert)
        left = expires - datetime.datetime.now(datetime.UTC)
        if left.days < 0:
            problems.append(f"certificate {cert} expired on {expires:%Y-%m-%d}")
        elif left.days < 14:
            problems.append(f"certificate {cert} expires in {left.days} days")
        else:
            notes.append(f"certificate: {cert}, valid until {expires:%Y-%m-%d}")
    except (OSError, ValueError) as e:
        problems.append(f"certificate {cert} cannot be read: {e}")
    snap = st.directory.snapshot()
    notes.append(
        f"directory: {len(snap.domains)} domains, {len(snap.mailboxes)} mailboxes, "
        f"{len(snap.logins)} users, {len(snap.address_rules)} address rules"
    )
    for pattern, target in sorted(snap.address_rules.items()):
        dom = pattern.rsplit("@", 1)[-1]
        if dom not in snap.domains:
            problems.append(f"address rule {pattern}: domain {dom} is not hosted (rule never used)")
        if not target.startswith("error:") and "@" not in target:
            base = target.split("+", 1)[0].lower()
            if "%" not in base and base not in snap.mailboxes:
                problems.append(
                    f"address rule {pattern} -> {target}: no such mailbox "
                    f"(mail to it is refused with 550 5.1.1 User unknown)"
                )
    for login in snap.logins:
        if login.mailbox not in snap.mailboxes:
            problems.append(f"user {login.address}: its mailbox {login.mailbox} does not exist")
    problems.extend(_mailbox_path_problems(cfg, snap))
    from daisymail.cli.imap_notes import mbox_notes

    notes.extend(mbox_notes(snap.mailboxes.values()))
    for n in notes:
        click.echo(n)
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        fail(f"{len(problems)} problem(s) found")
    click.echo("ok")


def _mailbox_path_problems(cfg: Config, snap: Snapshot) -> list[str]:
    from daisymail.cli.mailbox_paths import mailbox_path_problem
    from daisymail.store.files import FileStore

    store = FileStore(str(cfg.path(cfg.storage.mail_dir)))
    found = []
    for box in sorted(snap.mailboxes.values(), key=lambda b: b.name):
        why = mailbox_path_problem(store, box)
        if why is not None:
            found.append(f"mailbox {box.name}: {why}")
    return found
