"""Which public address does a local sender get? sendmail's genericstable (§2.6).

Qualifying senders: unqualified names, and addresses whose domain is exactly a hosted
domain with ``generics`` on (class G). The hostname (``$j``) is not in G by itself.
Keys are lowercased; ``%1`` keeps the case of the address as written.
"""

from __future__ import annotations

from daisymail.directory.model import Snapshot
from daisymail.routing.addresses import normalize_domain, split_address, split_detail
from daisymail.routing.substitution import substitute


def rewrite_sender(address: str, snapshot: Snapshot, hostname: str) -> str | None:
    """The rewritten sender, or None when no entry applies (the address stays as is)."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    host = normalize_domain(hostname)
    at = "@" in text
    addr = split_address(text)
    local, domain = addr.local, addr.domain
    if not at:
        domain = host
    else:
        hosted = snapshot.domains.get(domain)
        if hosted is None or not hosted.generics:
            return None
    if not local:
        return None
    for key, params in _candidates(local, domain, qualified=bool(at)):
        value = snapshot.sender_rules.get(key.lower())
        if value is None:
            continue
        result = substitute(value, key.lower(), params).strip(" \t\r\n")
        if "@" not in result:
            result = f"{result}@{host}"
        return None if result == text else result
    return None


def _candidates(local: str, domain: str, *, qualified: bool) -> list[tuple[str, tuple[str, ...]]]:
    """Keys in sendmail's order; the ``@domain`` key is only tried for qualified input,
    which is why it beats a bare-user entry there but not for ``user`` alone."""
    user, detail = split_detail(local)
    plus = detail is not None and bool(user)
    keys: list[tuple[str, tuple[str, ...]]] = [(f"{local}@{domain}", ())]
    if plus:
        keys += [(f"{user}+*@{domain}", (detail or "",)), (f"{user}@{domain}", ())]
    if qualified:
        keys.append((f"@{domain}", (local,)))
    keys.append((local, ()))
    if plus:
        keys += [(f"{user}+*", (detail or "",)), (user, ())]
    return keys
