"""Explain a recipient decision step by step, like sendmail -bv/-bt."""

from __future__ import annotations

import ipaddress
from typing import Any

from daisymail.config import Config
from daisymail.directory.model import Snapshot
from daisymail.routing.addresses import AddressError, domain_of, parse_path
from daisymail.routing.recipients import Deliver, Forward, Reject, Remote, resolve_recipient
from daisymail.routing.relay import relay_allowed
from daisymail.service.errors import invalid


def resolve(
    cfg: Config,
    snap: Snapshot,
    address: str,
    client_ip: str = "203.0.113.1",
    authenticated: bool = False,
) -> dict[str, Any]:
    """What Daisy would do with mail to address, and why, as plain data."""
    if not address.strip():
        raise invalid("empty address: give user@domain", "address")
    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        raise invalid(f"bad client IP {client_ip!r}", "client_ip") from None
    arg = address if address.startswith("<") else f"<{address}>"
    try:
        parsed = parse_path(arg, smtputf8=True)
    except AddressError as e:
        raise invalid(
            f"bad address {address!r}: {e.code} {e.enhanced} {e.text}", "address"
        ) from None
    if parsed is None:
        raise invalid("the null address <> is only a sender", "address")
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
    return out
