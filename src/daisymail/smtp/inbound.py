"""What port 25 accepts: mail for hosted domains as routing decides, relay only as allowed.

Decisions are made on the directory snapshot in memory, so RCPT costs no I/O.
"""

from __future__ import annotations

from daisymail.config import Relay
from daisymail.directory.base import Directory
from daisymail.routing.addresses import split_address
from daisymail.routing.recipients import Deliver, Forward, Reject, Remote, resolve_recipient
from daisymail.routing.relay import relay_allowed
from daisymail.smtp.protocol import Envelope, RcptDecision, Reply, SessionInfo


class InboundPolicy:
    """RCPT decisions for the MX port; forwards and relaying need the outbound queue."""

    def __init__(
        self, directory: Directory, relay: Relay, *, queue_available: bool = False
    ) -> None:
        self.directory = directory
        self.relay = relay
        self.queue_available = queue_available

    def check_sender(
        self, session: SessionInfo, sender: str, params: dict[str, str]
    ) -> Reply | None:
        return None

    def check_recipient(
        self, session: SessionInfo, envelope: Envelope, address: str, params: dict[str, str]
    ) -> RcptDecision:
        snap = self.directory.snapshot()
        addr = split_address(address)
        decision = resolve_recipient(addr, snap).decision
        if isinstance(decision, Deliver):
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
