"""`daisymail resolve`: explain a recipient decision step by step, like sendmail -bv/-bt."""

from __future__ import annotations

from typing import Any

import click

from daisymail.cli.common import EXIT_USAGE, fail, print_json, state
from daisymail.routing.addresses import AddressError, domain_of, parse_path
from daisymail.routing.recipients import Deliver, Forward, Reject, Remote, resolve_recipient
from daisymail.routing.relay import relay_allowed


@click.command()
@click.argument("address")
@click.option(
    "--client-ip", default="203.0.113.1", show_default=True, help="Client to judge relaying for."
)
@click.option("--authenticated", is_flag=True, help="Judge as an authenticated (SMTP AUTH) client.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def resolve(address: str, client_ip: str, authenticated: bool, as_json: bool) -> None:
    """Show what Daisy would do with mail to ADDRESS, and why."""
    st = state()
    cfg = st.config
    if not address.strip():
        fail("empty address: give user@domain", EXIT_USAGE)
    arg = address if address.startswith("<") else f"<{address}>"
    try:
        parsed = parse_path(arg, smtputf8=True)
    except AddressError as e:
        fail(f"bad address {address!r}: {e.code} {e.enhanced} {e.text}", EXIT_USAGE)
    if parsed is None:
        fail("the null address <> is only a sender", EXIT_USAGE)
    snap = st.directory.snapshot()
    res = resolve_recipient(parsed, snap)
    decision = res.decision
    out: dict[str, Any] = {"address": str(parsed), "rule": res.rule, "steps": list(res.steps)}
    relay_domain = parsed.domain
    if isinstance(decision, Deliver):
        out.update(decision="deliver", mailbox=decision.mailbox, detail=decision.detail)
        box = snap.mailboxes.get(decision.mailbox)
        if box is not None:
            out["format"] = box.format
    elif isinstance(decision, Forward):
        out.update(decision="forward", forward_to=decision.address)
    elif isinstance(decision, Reject):
        out.update(decision="reject", reply=decision.reply())
    elif isinstance(decision, Remote):
        out.update(decision="relay", address=decision.address)
        relay_domain = domain_of(decision.address)
    rd = relay_allowed(
        relay_domain,
        client_ip=client_ip,
        authenticated=authenticated,
        snapshot=snap,
        networks=cfg.relay.networks,
        hosts_only=cfg.relay.hosts_only,
    )
    out["relay"] = {"allowed": rd.allowed, "reason": rd.reason, "client_ip": client_ip}
    if isinstance(decision, Remote) and not rd.allowed:
        out["decision"] = "reject"
        out["reply"] = f"550 5.7.1 <{parsed}>... Relaying denied"
    dom = snap.domains.get(parsed.domain)
    if dom is not None:
        out["domain"] = {"name": dom.name, "mode": "fallback" if dom.fallback else "strict"}
    if as_json:
        print_json(out)
        return
    click.echo(f"address:  {out['address']}")
    if dom is not None:
        rule_kind = (
            "fallback (any mailbox name is an address here)"
            if dom.fallback
            else "strict (only listed addresses)"
        )
        click.echo(f"domain:   {dom.name}, hosted, {rule_kind}")
    else:
        click.echo(f"domain:   {parsed.domain or '(none)'}, not hosted here")
    for step in res.steps:
        click.echo(f"  - {step}")
    if out["decision"] == "deliver":
        detail = f" (detail {out['detail']!r})" if out.get("detail") else ""
        click.echo(f"decision: deliver to mailbox {out['mailbox']}{detail}")
    elif out["decision"] == "forward":
        click.echo(f"decision: forward to {out['forward_to']}")
    elif out["decision"] == "relay":
        click.echo(f"decision: relay to {out['address']}")
    else:
        click.echo(f"decision: reject: {out['reply']}")
    verdict = "allowed" if rd.allowed else "denied"
    click.echo(f"relay:    {verdict} for client {client_ip} ({rd.reason})")
