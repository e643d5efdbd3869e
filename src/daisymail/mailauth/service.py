"""The port 25 checks as the SMTP server uses them: built from ``[verify]`` and run on
the spooled message before the reply to DATA.

Clients in the relay networks and logged-in users are not checked (their mail is
ours to vouch for). Reading the spool and hashing run in a worker thread; the DNS
lookups are async.
"""

from __future__ import annotations

import asyncio
import logging

from daisymail.config import Config
from daisymail.dns import Resolver
from daisymail.dns import from_config as resolver_from_config
from daisymail.mailauth.canon import split_fields
from daisymail.mailauth.inbound import InboundCheck, InboundPolicy, Verdict
from daisymail.mailauth.results import remove_own
from daisymail.observability import event
from daisymail.store.durable import rewrite_header

log = logging.getLogger("daisymail.smtp")
READ_SIZE = 256 * 1024


class MailAuth:
    def __init__(self, cfg: Config, resolver: Resolver | None = None) -> None:
        v = cfg.verify
        self.authserv_id = v.authserv_id or cfg.hostname
        self.policy = InboundPolicy(
            dmarc_reject=v.dmarc_reject,
            dmarc_quarantine=v.dmarc_quarantine,
            spf_fail_without_dmarc=v.spf_fail_without_dmarc,
            temperror=v.temperror,
            trusted_arc_sealers=tuple(v.trusted_arc_sealers),
        )
        self.resolver = resolver or resolver_from_config(cfg.dns.nameservers, cfg.dns.timeout)

    async def judge(self, path: str, ip: str, helo: str, mailfrom: str, sid: str) -> Verdict:
        """The verdict for the message in ``path``; Authentication-Results fields in it
        that claim our authserv-id are removed from the file first."""
        check = InboundCheck(
            self.resolver, self.authserv_id, ip=ip, helo=helo, mailfrom=mailfrom, policy=self.policy
        )
        await asyncio.to_thread(self._read, check, path)
        verdict = await check.verdict()
        event(
            log,
            "smtp.verdict",
            sid=sid,
            client=ip,
            spf=verdict.spf.result,
            dkim=",".join(f"{d.result}:{d.domain}" for d in verdict.dkim) or "none",
            dmarc=f"{verdict.dmarc.result}:{verdict.dmarc.from_domain}",
            action=verdict.action,
            override=verdict.override or None,
        )
        return verdict

    def _read(self, check: InboundCheck, path: str) -> None:
        with open(path, "rb") as f:
            while chunk := f.read(READ_SIZE):
                check.feed(chunk)
        strip_own_results(path, self.authserv_id)


def strip_own_results(path: str, authserv_id: str) -> bool:
    """Rewrite the file without forged Authentication-Results of ours; True if it did."""

    def edit(header: bytes) -> bytes | None:
        if b"authentication-results" not in header.lower():
            return None
        fields = split_fields(header)
        kept = remove_own(fields, authserv_id)
        return b"".join(kept) if len(kept) != len(fields) else None

    return rewrite_header(path, edit)
