"""`daisymail resolve`: explain a recipient decision step by step, like sendmail -bv/-bt."""

from __future__ import annotations

import click

from daisymail.cli.common import errors_as_messages, print_json, state
from daisymail.service.resolve import resolve as explain


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
    with errors_as_messages():
        out = explain(st.config, st.directory.snapshot(), address, client_ip, authenticated)
    dom_info = out.get("domain")
    if as_json:
        print_json(out)
        return
    click.echo(f"address:  {out['address']}")
    if dom_info is not None:
        rule_kind = (
            "fallback (any mailbox name is an address here)"
            if dom_info["mode"] == "fallback"
            else "strict (only listed addresses)"
        )
        click.echo(f"domain:   {dom_info['name']}, hosted, {rule_kind}")
    else:
        domain = out["address"].rpartition("@")[2]
        click.echo(f"domain:   {domain or '(none)'}, not hosted here")
    for step in out["steps"]:
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
    rd = out["relay"]
    verdict = "allowed" if rd["allowed"] else "denied"
    click.echo(f"relay:    {verdict} for client {client_ip} ({rd['reason']})")
