"""MTA-STS (RFC 8461): the policy file served at mta-sts.DOMAIN for each hosted domain."""

from __future__ import annotations

import hashlib

from daisymail.config import Config


def policy_text(cfg: Config) -> str | None:
    """The policy file, or None when [http.mta_sts] mode is unset (not served)."""
    p = cfg.http.mta_sts
    if not p.mode:
        return None
    mx = p.mx or [cfg.hostname]
    lines = ["version: STSv1", f"mode: {p.mode}", *(f"mx: {m}" for m in mx)]
    lines.append(f"max_age: {p.max_age}")
    return "\r\n".join(lines) + "\r\n"


def policy_domain(host_header: str, hosted: set[str] | frozenset[str]) -> str | None:
    """The hosted domain a request for ``mta-sts.DOMAIN`` is about, else None."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return None
    host = host.rsplit(":", 1)[0] if ":" in host else host
    host = host.rstrip(".")
    if not host.startswith("mta-sts."):
        return None
    domain = host.removeprefix("mta-sts.")
    return domain if domain in hosted else None


def txt_record(cfg: Config) -> str | None:
    """The ``_mta-sts`` TXT value: its id changes whenever the policy does."""
    text = policy_text(cfg)
    if text is None:
        return None
    return f"v=STSv1; id={hashlib.sha256(text.encode()).hexdigest()[:20]}"
