"""What port 25 accepts: mail for hosted domains as routing decides, relay only as allowed.

Decisions are made on the directory snapshot in memory, so RCPT costs no I/O beyond
the quota of a local Maildir mailbox (its limit file and a stat per cur/ and new/: usage
is cached, daisymail.quota). An authenticated session (submission, or port 25 where
``[smtp] mx_auth`` allows AUTH) may relay, and only as itself: the send-as rule lives
here, once, for every port.
"""

from __future__ import annotations

from daisymail.config import Relay
from daisymail.directory.base import Directory
from daisymail.directory.model import Login, Snapshot
from daisymail.logins import resolve_login
from daisymail.quota import Quotas, Verdict
from daisymail.routing.addresses import split_address
from daisymail.routing.recipients import (
    Deliver,
    Forward,
    Reject,
    Remote,
    SRSReverse,
    resolve_recipient,
)
from daisymail.routing.relay import relay_allowed
from daisymail.smtp.protocol import Envelope, RcptDecision, Reply, SessionInfo


def not_yours(address: str) -> Reply:
    return Reply(
        553, "5.7.1", (f"<{address}>... Sender address not owned by the authenticated user",)
    )


def may_send_as(login: Login, address: str, snapshot: Snapshot, hostname: str) -> bool:
    """The login's own address, or one whose address rule delivers to its mailbox."""
    if "@" not in address:
        address = f"{address}@{hostname}"
    addr = split_address(address)
    if not addr.local:
        return False
    if addr.domain == login.domain.lower() and addr.local.lower() == login.user.lower():
        return True
    resolution = resolve_recipient(addr, snapshot)
    decision = resolution.decision
    return (
        resolution.rule is not None
        and isinstance(decision, Deliver)
        and decision.mailbox == login.mailbox.lower()
    )


class InboundPolicy:
    """RCPT decisions for the MX port; forwards and relaying need the outbound queue."""

    def __init__(
        self,
        directory: Directory,
        relay: Relay,
        *,
        queue_available: bool = False,
        hostname: str = "localhost",
        srs: SRSReverse | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.directory = directory
        self.quotas = quotas
        self.relay = relay
        self.queue_available = queue_available
        self.hostname = hostname
        self.srs = srs

    def check_sender(
        self, session: SessionInfo, sender: str, params: dict[str, str]
    ) -> Reply | None:
        """Anyone may send as anyone to a hosted recipient; an authenticated session only
        as its own addresses, since it may relay (issue 11, defect 2)."""
        if session.authenticated_as is None:
            return None
        snap = self.directory.snapshot()
        login = resolve_login(snap, session.authenticated_as)
        if login is None or not sender or not may_send_as(login, sender, snap, self.hostname):
            return not_yours(sender)
        return None

    def check_recipient(
        self, session: SessionInfo, envelope: Envelope, address: str, params: dict[str, str]
    ) -> RcptDecision:
        snap = self.directory.snapshot()
        addr = split_address(address)
        decision = resolve_recipient(addr, snap, self.srs).decision
        if isinstance(decision, Deliver):
            refused = self._over_quota(snap, decision.mailbox, envelope, address)
            if refused is not None:
                return RcptDecision(refused, False)
            return RcptDecision(
                Reply(250, "2.1.5", (f"<{address}>... Recipient ok",)), True, decision
            )
        if isinstance(decision, Reject):
            return RcptDecision(Reply(decision.code, decision.enhanced, (decision.text,)), False)
        if isinstance(decision, Remote):
            verdict = relay_allowed(
                addr.domain,
                client_ip=session.client_ip,
                authenticated=session.authenticated_as is not None,
                snapshot=snap,
                networks=self.relay.networks,
                hosts_only=self.relay.hosts_only,
            )
            if not verdict.allowed:
                return RcptDecision(
                    Reply(550, "5.7.1", (f"<{address}>... Relaying denied",)), False
                )
        assert isinstance(decision, Forward | Remote)
        if not self.queue_available:
            return RcptDecision(
                Reply(451, "4.3.0", (f"<{address}>... Outbound delivery is not available yet",)),
                False,
            )
        return RcptDecision(Reply(250, "2.1.5", (f"<{address}>... Recipient ok",)), True, decision)

    def _over_quota(
        self, snap: Snapshot, mailbox: str, envelope: Envelope, address: str
    ) -> Reply | None:
        """452 4.2.2 for a mailbox at or over its quota, 552 5.2.2 when the SIZE= the
        client declared is larger than the whole quota: refused per recipient here, as
        only RCPT can (after DATA one reply answers for every recipient)."""
        box = snap.mailboxes.get(mailbox)
        if self.quotas is None or box is None:
            return None
        declared = int(envelope.mail_params.get("SIZE", "0") or 0)
        verdict = self.quotas.check(box, max(declared, 1))
        if verdict is Verdict.OK:
            return None
        code, text = verdict.smtp
        enhanced, _, words = text.partition(" ")
        return Reply(code, enhanced, (f"<{address}>... {words}",))
