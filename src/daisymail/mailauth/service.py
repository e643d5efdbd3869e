"""The port 25 checks as the SMTP server uses them: built from ``[verify]`` and run on
the message before the reply to DATA.

Clients in the relay networks and logged-in users are not checked (their mail is
ours to vouch for). A message that fits in one block is judged whole, by a verdict
worker process when one is ready (``workers.py``), else on the event loop; a larger
one is parsed and hashed once, as it streams to the spool (in the SMTP session's I/O
thread), and judged here. The DNS lookups are async.
"""

from __future__ import annotations

import logging

from daisymail.config import Config
from daisymail.dns import Resolver
from daisymail.dns import from_config as resolver_from_config
from daisymail.mailauth.canon import end_of_header, split_fields
from daisymail.mailauth.inbound import InboundCheck, InboundPolicy, Judgement
from daisymail.mailauth.results import claims_own, remove_own
from daisymail.mailauth.workers import VerdictWorkers
from daisymail.observability import event
from daisymail.store.durable import rewrite_header

log = logging.getLogger("daisymail.smtp")


class MailAuth:
    def __init__(
        self, cfg: Config, resolver: Resolver | None = None, workers: VerdictWorkers | None = None
    ) -> None:
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
        self.workers = workers
        if workers is not None:
            workers.configure(self.authserv_id, self.policy, cfg.dns.nameservers, cfg.dns.timeout)

    def begin(self, ip: str, helo: str, mailfrom: str) -> InboundCheck:
        """The check of one message; the SMTP session feeds it the message as it
        streams to the spool (in the I/O thread that writes it), so the verdict needs
        no second read of the file."""
        return InboundCheck(
            self.resolver, self.authserv_id, ip=ip, helo=helo, mailfrom=mailfrom, policy=self.policy
        )

    async def judge(self, check: InboundCheck, sid: str) -> Judgement:
        """The judgement of the message fed to ``check``; a refusal is logged here, an
        accepted message's verdict in its ``smtp.message.accepted`` line
        (``verdict_fields``). Forged Authentication-Results of ours (``forged``) are
        the caller's to remove, from the staged file or from the message in memory."""
        judged = Judgement.of(await check.verdict(), self.forged(check))
        _log_refusal(judged, check.ip, sid)
        return judged

    async def judge_whole(self, check: InboundCheck, message: bytes, sid: str) -> Judgement:
        """The judgement of a whole message (at most one block) not yet fed to
        ``check``: from a worker process when one is ready, else made here."""
        judged = None
        if self.workers is not None:
            judged = await self.workers.judge(check.ip, check.helo, check.mailfrom, message)
        if judged is None:
            check.feed(message)
            judged = Judgement.of(await check.verdict(), self.forged(check))
        _log_refusal(judged, check.ip, sid)
        return judged

    def forged(self, check: InboundCheck) -> bool:
        """Does the message claim results of ours? Only then is it edited."""
        return claims_own(check.fields, self.authserv_id)


def verdict_fields(judged: Judgement) -> dict[str, object]:
    """The verdict as log fields (``by``: judged in a worker process or the server)."""
    return {
        "spf": judged.spf,
        "dkim": judged.dkim,
        "dmarc": judged.dmarc,
        "action": judged.action,
        "override": judged.override or None,
        "by": judged.by,
    }


def _log_refusal(judged: Judgement, client: str, sid: str) -> None:
    """``smtp.verdict`` for a message the verdict refuses (reject or defer): its only
    line. An accepted message's verdict goes in its ``smtp.message.accepted`` line, one
    line per message (a line of its own cost a busy server more than the hand-over
    to a worker did)."""
    if judged.reply is not None:
        event(log, "smtp.verdict", logging.INFO, sid=sid, client=client, **verdict_fields(judged))


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
    end = end_of_header(message)
    head, rest = (message, b"") if end is None else (message[: end[0]], message[end[0] :])
    new = _without_own(head, authserv_id)
    return message if new is None else new + rest
