"""Directory admin commands: domains, mailboxes, users, aliases, sender rules, relay rules.

Each command only parses, calls the service layer (daisymail.service.admin, which the
HTTP API calls too) and prints; the checks live there, so they hold for every caller.
"""

from __future__ import annotations

from typing import Any

import click

from daisymail.cli.common import (
    errors_as_messages,
    fail,
    json_option,
    print_json,
    print_table,
    read_password,
    state,
)
from daisymail.quota import format_size
from daisymail.routing.relay import class_entry_from_relay_rule
from daisymail.service.admin import Admin
from daisymail.service.quota import QuotaOps


def _admin() -> Admin:
    st = state()
    return Admin(st.directory, st.config.storage.default_format)


def _quota_ops() -> QuotaOps:
    st = state()
    return QuotaOps(st.config, st.directory)


# -- domain -------------------------------------------------------------------------------
@click.group()
def domain() -> None:
    """Hosted domains (sendmail's local-host-names)."""


_fallback_opt = click.option(
    "--fallback/--strict",
    default=None,
    help="--fallback: every mailbox name is an address here unless a catch-all exists "
    "(sendmail's rule); --strict (default for new domains): only listed addresses exist.",
)
_case_opt = click.option(
    "--login-case",
    type=click.Choice(["sensitive", "insensitive"]),
    default=None,
    help="Whether login user names are case-sensitive (teapop) or not (default).",
)


@domain.command("add")
@click.argument("name")
@_fallback_opt
@_case_opt
def domain_add(name: str, fallback: bool | None, login_case: str | None) -> None:
    """Host a new domain."""
    with errors_as_messages():
        dom = _admin().add_domain(name, fallback, login_case)
    click.echo(f"domain {dom.name} added")


@domain.command("set")
@click.argument("name")
@_fallback_opt
@_case_opt
def domain_set(name: str, fallback: bool | None, login_case: str | None) -> None:
    """Change a domain's settings."""
    with errors_as_messages():
        dom = _admin().update_domain(name, fallback, login_case)
    click.echo(f"domain {dom.name} updated")


@domain.command("remove")
@click.argument("name")
def domain_remove(name: str) -> None:
    """Stop hosting a domain (refused while it still has users or aliases)."""
    with errors_as_messages():
        _admin().remove_domain(name)
    click.echo(f"domain {name.lower()} removed")


@domain.command("list")
@click.argument("name", required=False)
@json_option
def domain_list(name: str | None, as_json: bool) -> None:
    """List hosted domains."""
    with errors_as_messages():
        doms = _admin().list_domains(name)
    if as_json:
        print_json(doms)
        return
    rows = [
        (
            d.name,
            "fallback" if d.fallback else "strict",
            "sensitive" if d.login_case_sensitive else "insensitive",
            d.origin,
        )
        for d in doms
    ]
    print_table(rows, ("DOMAIN", "ADDRESSES", "LOGIN-CASE", "ORIGIN"))


# -- mailbox ------------------------------------------------------------------------------
@click.group()
def mailbox() -> None:
    """Local mailboxes (the "local users" mail is stored for)."""


@mailbox.command("add")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), default=None)
@click.option("--path", default="", help="File or folder; default: NAME under the mail dir.")
def mailbox_add(name: str, fmt: str | None, path: str) -> None:
    """Create a mailbox."""
    with errors_as_messages():
        box = _admin().add_mailbox(name, fmt, path)
    click.echo(f"mailbox {box.name} added ({box.format})")


@mailbox.command("remove")
@click.argument("name")
def mailbox_remove(name: str) -> None:
    """Remove a mailbox record (its files are left on disk)."""
    with errors_as_messages():
        _admin().remove_mailbox(name)
    click.echo(f"mailbox {name.lower()} removed (files kept on disk)")


@mailbox.command("list")
@click.argument("name", required=False)
@json_option
def mailbox_list(name: str | None, as_json: bool) -> None:
    """List mailboxes, with their quota and the space they use (Maildir)."""
    with errors_as_messages():
        boxes = _quota_ops().describe_all(_admin().list_mailboxes(name))
    if as_json:
        print_json(boxes)
        return
    rows = [
        (
            b["name"],
            b["format"],
            b["path"] or "(default)",
            _shown_quota(b),
            "-" if b["used"] is None else format_size(b["used"]),
        )
        for b in boxes
    ]
    print_table(rows, ("MAILBOX", "FORMAT", "PATH", "QUOTA", "USED"))


def _shown_quota(box: dict[str, Any]) -> str:
    if box["used"] is None:
        return "-"  # mbox: quotas need Maildir
    text = format_size(box["quota"]) if box["quota"] else "none"
    return f"{text} (default)" if box["quota_default"] else text


@mailbox.command("set")
@click.argument("name")
@click.option(
    "--quota",
    required=True,
    help="Storage limit, e.g. 500M or 2G; 0 for none, 'default' for [storage] quota.",
)
def mailbox_set(name: str, quota: str) -> None:
    """Set a Maildir mailbox's own quota (kept in the Maildir, so every node sees it)."""
    with errors_as_messages():
        box = _quota_ops().set_quota(name, quota)
    if box["quota_default"]:
        click.echo(f"mailbox {box['name']}: quota from [storage] quota")
    elif box["quota"]:
        click.echo(f"mailbox {box['name']}: quota {box['quota']} octets")
    else:
        click.echo(f"mailbox {box['name']}: no quota")


@mailbox.command("convert")
@click.argument("name", required=False)
@click.option("--to", "to", type=click.Choice(["maildir", "mbox"]), required=True)
@click.option(
    "--path",
    default=None,
    help="Where the new mailbox goes (default: beside the old one, e.g. NAME.maildir/).",
)
@click.option("--all", "every", is_flag=True, help="Convert every mailbox not yet in that format.")
def mailbox_convert(name: str | None, to: str, path: str | None, every: bool) -> None:
    """Convert a mailbox (or --all of them) to Maildir or mbox, keeping its messages and
    POP3 UIDLs.

    The old mailbox is renamed aside to OLD.converted-TIMESTAMP, never deleted. IMAP
    serves Maildir only: `convert --all --to maildir` readies every mailbox for it."""
    if every == bool(name) or (every and path):
        fail("give a mailbox NAME, or --all (without --path)")
    if not every:
        assert name is not None
        _convert_one(name.lower(), to, path)
        return
    from daisymail.store.files import is_maildir

    boxes = sorted(state().directory.snapshot().mailboxes.values(), key=lambda m: m.name)
    todo = [b.name for b in boxes if is_maildir(b) != (to == "maildir")]
    if not todo:
        click.echo(f"every mailbox is {to} already")
        return
    for box in todo:
        _convert_one(box, to, None)
    click.echo(f"{len(todo)} mailboxes converted to {to}")


def _convert_one(name: str, to: str, path: str | None) -> None:
    from daisymail.store.base import MailboxInUse, StorageError, ViewOptions
    from daisymail.store.convert import ConversionError, convert_mailbox
    from daisymail.store.files import FileStore

    st = state()
    cfg = st.config
    options = ViewOptions(
        use_x_uidl=cfg.pop3.use_x_uidl,
        hide_imap_control_message=cfg.pop3.hide_imap_control_message,
    )
    store = FileStore(str(cfg.path(cfg.storage.mail_dir)))
    with errors_as_messages():
        try:
            res = convert_mailbox(st.directory, store, name, to, options, path=path)  # type: ignore[arg-type]
        except ConversionError as e:
            fail(f"cannot convert {name}: {e}")
        except MailboxInUse:
            fail(
                f"mailbox {name} is in use (a POP3 session is open, or a delivery holds "
                "its lock): nothing was changed; try again when the session has ended"
            )
        except (StorageError, OSError) as e:
            fail(f"cannot convert {name}: {e}; nothing was changed")
    click.echo(f"mailbox {name}: {res.messages} messages converted to {to} in {res.location}")
    if res.late:
        click.echo(f"{res.late} messages delivered during the conversion were carried over")
    click.echo(f"directory record switched to {to} at {res.path or '(default)'}")
    if res.kept_as:
        click.echo(f"old mailbox kept as {res.kept_as}")
    if res.skipped_bytes:
        click.echo(
            f"note: {res.skipped_bytes} bytes outside any message POP3 showed (text before "
            "the first From line, a hidden IMAP control message, an unterminated last line) "
            f"were not copied; they are still in {res.kept_as}"
        )
    if to == "mbox":
        click.echo(
            "note: sizes grow by the X-UIDL header and mbox framing; UIDLs are kept only "
            "with [pop3] use_x_uidl = true"
            + (
                ""
                if options.use_x_uidl
                else " (it is false now: set it, or clients will fetch every message again)"
            )
        )
        if res.uidls_lost:
            click.echo(
                f"warning: {res.uidls_lost} UIDLs are longer than an X-UIDL header keeps "
                "(49 characters); clients will fetch those messages again"
            )
    for warning in res.warnings:
        click.echo(f"warning: {warning}")


# -- user ---------------------------------------------------------------------------------
@click.group()
def user() -> None:
    """Users: a login (address + password) and the address that delivers to its mailbox."""


@user.command("add")
@click.argument("address")
@click.option("--mailbox", "mailbox_name", help="Mailbox to use (created if missing).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_add(address: str, mailbox_name: str | None, password_stdin: bool) -> None:
    """Add a user ADDRESS: login, address rule and (if missing) its mailbox."""
    admin = _admin()
    with errors_as_messages():
        admin.check_new_user(address, mailbox_name)  # before asking for the password
        login = admin.add_user(address, read_password(password_stdin), mailbox_name)
    click.echo(f"user {login.address} added (mailbox {login.mailbox})")


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def user_passwd(address: str, password_stdin: bool) -> None:
    """Set a user's password (stored as an argon2id hash)."""
    admin = _admin()
    with errors_as_messages():
        admin.find_user(address)
        login = admin.set_password(address, read_password(password_stdin))
    click.echo(f"password of {login.address} changed")


@user.command("remove")
@click.argument("address")
def user_remove(address: str) -> None:
    """Remove a user's login and its address rule (the mailbox is kept)."""
    with errors_as_messages():
        login = _admin().remove_user(address)
    click.echo(f"user {login.address} removed (mailbox {login.mailbox} kept)")


@user.command("list")
@click.argument("domain_name", metavar="[DOMAIN]", required=False)
@json_option
def user_list(domain_name: str | None, as_json: bool) -> None:
    """List users, optionally of one domain."""
    users = _admin().list_users(domain_name)
    if as_json:
        print_json(users)
        return
    print_table([(x["address"], x["mailbox"]) for x in users], ("USER", "MAILBOX"))


# -- alias --------------------------------------------------------------------------------
@click.group()
def alias() -> None:
    """Address rules (virtusertable): user@dom, user+*@dom, user++@dom, @dom catch-alls."""


@alias.command("add")
@click.argument("pattern")
@click.argument("target")
@click.option("--create-mailbox", is_flag=True, help="Create TARGET as a mailbox if missing.")
def alias_add(pattern: str, target: str, create_mailbox: bool) -> None:
    """Route PATTERN to TARGET: a mailbox name, an address, or error:CODE text."""
    with errors_as_messages():
        rule = _admin().add_alias(pattern, target, create_mailbox)
    click.echo(f"alias {rule.pattern} -> {rule.target}")


@alias.command("remove")
@click.argument("pattern")
def alias_remove(pattern: str) -> None:
    """Remove an address rule."""
    with errors_as_messages():
        _admin().remove_alias(pattern)
    click.echo(f"alias {pattern.lower()} removed")


@alias.command("list")
@click.argument("domain_name", metavar="[DOMAIN]", required=False)
@json_option
def alias_list(domain_name: str | None, as_json: bool) -> None:
    """List address rules, optionally of one domain."""
    rules = _admin().list_aliases(domain_name)
    if as_json:
        print_json(rules)
        return
    print_table([(r["pattern"], r["target"]) for r in rules], ("PATTERN", "TARGET"))


# -- sender -------------------------------------------------------------------------------
@click.group()
def sender() -> None:
    """Sender rewriting rules (genericstable): user, user@dom or @dom to a public address."""


@sender.command("add")
@click.argument("from_", metavar="FROM")
@click.argument("address")
def sender_add(from_: str, address: str) -> None:
    """Rewrite sender FROM to ADDRESS."""
    with errors_as_messages():
        rule = _admin().add_sender(from_, address)
    click.echo(f"sender {rule.pattern} -> {rule.target}")


@sender.command("remove")
@click.argument("from_", metavar="FROM")
def sender_remove(from_: str) -> None:
    """Remove a sender rule."""
    with errors_as_messages():
        _admin().remove_sender(from_)
    click.echo(f"sender {from_.lower()} removed")


@sender.command("list")
@json_option
def sender_list(as_json: bool) -> None:
    """List sender rules."""
    rules = _admin().list_senders()
    if as_json:
        print_json(rules)
        return
    print_table([(r["pattern"], r["target"]) for r in rules], ("FROM", "ADDRESS"))


# -- relay --------------------------------------------------------------------------------
@click.group()
def relay() -> None:
    """Relay rules (relay-domains): domains mail may be relayed to, networks that may relay."""


@relay.command("add")
@click.argument("entry", metavar="DOMAIN-OR-NETWORK")
def relay_add(entry: str) -> None:
    """Allow relaying to a domain (and its subdomains) or from a network.

    Networks in CIDR (10.0.0.0/8, 2001:db8::/32) or sendmail's forms (192.168.5,
    IPv6:2001:db8::)."""
    with errors_as_messages():
        rule = _admin().add_relay(entry)
    click.echo(f"relay {rule.kind} {rule.pattern} added")


@relay.command("remove")
@click.argument("entry", metavar="DOMAIN-OR-NETWORK")
def relay_remove(entry: str) -> None:
    """Remove a relay rule."""
    with errors_as_messages():
        rule = _admin().remove_relay(entry)
    click.echo(f"relay {rule.kind} {rule.pattern} removed")


@relay.command("list")
@json_option
def relay_list(as_json: bool) -> None:
    """List relay rules (the config's [relay] networks apply as well)."""
    rules = _admin().list_relays()
    if as_json:
        print_json(rules)
        return
    print_table(
        [(r.kind, r.pattern, class_entry_from_relay_rule(r)) for r in rules],
        ("KIND", "PATTERN", "AS-RELAY-DOMAINS"),
    )
