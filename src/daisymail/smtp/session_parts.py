"""What the SMTP session's mixins (commands, bodies, sasl_auth) rely on ServerSession
(protocol.py) to provide: its fields and its plumbing, declared once."""

from __future__ import annotations

from collections import deque

from daisymail import sasl

from .data import CrlfDecoder, DotDecoder, HopCounter
from .events import Envelope, Event, Policy, SessionInfo, Settings, _State
from .replies import Reply


class SessionParts:
    settings: Settings
    policy: Policy
    info: SessionInfo
    _state: _State
    _in: bytearray
    _eof: bool
    _events: deque[Event]
    _ehlo: bool
    _envelope: Envelope | None
    _dot: DotDecoder | None
    _too_big: bool
    _hops: HopCounter | None
    _chunks: CrlfDecoder | None
    _bdat_left: int
    _bdat_size: int
    _bdat_last: bool
    _bdat_refusal: Reply | None
    _exchange: sasl.Exchange | None
    _auth_username: str

    def _send(self, answer: Reply) -> None:
        raise NotImplementedError

    def _error(self, answer: Reply) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _abort_message(self, reason: str) -> None:
        raise NotImplementedError

    def _reset_transaction(self) -> None:
        raise NotImplementedError
