"""The port 25 checks as the SMTP server uses them: built from ``[verify]`` and run on
the spooled message before the reply to DATA.

Clients in the relay networks and logged-in users are not checked (their mail is
ours to vouch for). The message is parsed and hashed once, as it streams to the spool
(in the SMTP session's I/O thread); the DNS lookups are async.
"""

from __future__ import annotations

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

    def begin(self, ip: str, helo: str, mailfrom: str) -> InboundCheck:
        """The check of one message; the SMTP session feeds it the message as it
        streams to the spool (in the I/O thread that writes it), so the verdict needs
        no second read of the file."""
        return InboundCheck(
            self.resolver, self.authserv_id, ip=ip, helo=helo, mailfrom=mailfrom, policy=self.policy
        )

    async def judge(self, check: InboundCheck, sid: str) -> Verdict:
        """The verdict for the message fed to ``check``, logged. Forged
        Authentication-Results of ours in it are the caller's to remove (``forged``),
        from the staged file or from the message in memory."""
        verdict = await check.verdict()
        event(
            log,
            "smtp.verdict",
            sid=sid,
            client=check.ip,
            spf=verdict.spf.result,
            dkim=",".join(f"{d.result}:{d.domain}" for d in verdict.dkim) or "none",
            dmarc=f"{verdict.dmarc.result}:{verdict.dmarc.from_domain}",
            action=verdict.action,
            override=verdict.override or None,
        )
        return verdict

    def forged(self, check: InboundCheck) -> bool:
        """Does the message claim results of ours (an Authentication-Results field with
        our authserv-id, which only we may add)? Only then is it edited."""
        fields = check.fields
        return len(remove_own(fields, self.authserv_id)) != len(fields)


def _without_own(header: bytes, authserv_id: str) -> bytes | None:
    """The header section without forged Authentication-Results of ours; None if it
    has none."""
    if b"authentication-results" not in header.lower():
        return None
    fields = split_fields(header)
    kept = remove_own(fields, authserv_id)
    return b"".join(kept) if len(kept) != len(fields) else None


def strip_own_results(path: str, authserv_id: str) -> bool:
    """Rewrite the staged file without forged Authentication-Results of ours; True if it
    did."""
    return rewrite_header(path, lambda header: _without_own(header, authserv_id))


def strip_own_results_in(message: bytes, authserv_id: str) -> bytes:
    """A whole message (LF line ends) without forged Authentication-Results of ours."""
    if message.startswith(b"\n"):  # no header section at all
        return message
    end = message.find(b"\n\n")
    head, rest = (message, b"") if end < 0 else (message[: end + 1], message[end + 1 :])
    new = _without_own(head, authserv_id)
    return message if new is None else new + rest
