"""Message bodies in the SMTP session: DATA's dot-terminated text and BDAT's counted
chunks, streamed out as MessageData, checked against the size limit and for mail loops
(too many Received headers), and ended with MessageComplete or a refusal.

A mixin of ServerSession (protocol.py), kept apart because it is one job: the session
switches to it in the DATA and BDAT states, and it hands back to command reading.
"""

from __future__ import annotations

from . import replies as R
from .events import (
    MessageAborted,
    MessageComplete,
    MessageData,
    _State,
)
from .replies import Reply, reply
from .session_parts import SessionParts


class BodyReader(SessionParts):
    """The DATA and BDAT states of ServerSession, which provides what SessionParts declares."""

    def _step_data(self) -> bool:
        decoder = self._dot
        assert decoder is not None
        if not self._in:
            if not self._eof:
                return False
            self._abort_message("connection closed")
            self._close()
            return True
        body, rest = decoder.feed(bytes(self._in))
        self._in = bytearray(rest or b"")
        if not self._too_big and decoder.size > self.settings.max_message_size:
            self._events.append(MessageAborted("message too large"))
            self._too_big = True
        if not self._too_big and body:
            self._events.append(MessageData(body))
            if self._hops is not None:
                self._hops.feed(body)
        if rest is not None:
            self._dot = None
            refusal = R.MESSAGE_TOO_BIG if self._too_big else self._hop_refusal()
            self._finish_message(decoder.size, refusal=refusal)
        return True

    def _step_bdat(self) -> bool:
        if self._bdat_left and not self._in:
            if not self._eof:
                return False
            self._abort_message("connection closed")
            self._close()
            return True
        take = min(self._bdat_left, len(self._in))
        chunk = bytes(self._in[:take])
        del self._in[:take]
        self._bdat_left -= take
        decoder = self._chunks
        if self._bdat_refusal is None and decoder is not None:
            body = decoder.feed(chunk)
            if decoder.size > self.settings.max_message_size:
                self._abort_message("message too large")
                self._bdat_refusal = R.MESSAGE_TOO_BIG
            elif body:
                self._events.append(MessageData(body))
                if self._hops is not None:
                    self._hops.feed(body)
        if self._bdat_left:
            return True
        self._state = _State.COMMAND
        refusal = self._bdat_refusal
        if refusal is not None:
            self._bdat_refusal = None
            self._reset_transaction()
            if refusal is R.MESSAGE_TOO_BIG:
                self._send(refusal)
            else:
                self._error(refusal)
        elif self._bdat_last and decoder is not None:
            tail = decoder.finish()
            if tail:
                self._events.append(MessageData(tail))
            self._chunks = None
            self._finish_message(decoder.size, refusal=self._hop_refusal())
        else:
            self._send(reply(250, "2.0.0", f"{self._bdat_size} octets received"))
        return True

    def _hop_refusal(self) -> Reply | None:
        """554 5.4.6 for a message that passed more relays than max_hops: a mail loop."""
        hops, self._hops = self._hops, None
        if hops is None or not hops.exceeded:
            return None
        self._events.append(MessageAborted("mail loop: too many Received headers"))
        return R.TOO_MANY_HOPS

    def _finish_message(self, size: int, refusal: Reply | None) -> None:
        envelope = self._envelope
        assert envelope is not None
        if refusal is not None:
            self._state = _State.COMMAND
            self._envelope = None
            self._send(refusal)
            return
        envelope.size = size
        self._state = _State.AWAIT_MESSAGE
        self._events.append(MessageComplete(envelope))
