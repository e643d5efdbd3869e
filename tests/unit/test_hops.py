"""Mail loops (RFC 5321 6.3): Received: fields counted while the header section streams."""

import pytest

from daisymail.smtp.data import HopCounter
from daisymail.smtp.protocol import (
    Envelope,
    MessageAborted,
    MessageComplete,
    RcptDecision,
    ServerSession,
    SessionInfo,
    Settings,
)
from daisymail.smtp.replies import OK


def headers(n: int, name: bytes = b"Received") -> bytes:
    return b"".join(name + b": from h%d by x; date\n" % i for i in range(n))


@pytest.mark.parametrize(
    ("message", "count"),
    [
        (headers(3) + b"Subject: x\n\nbody\n", 3),
        (headers(2, b"RECEIVED") + headers(1, b"received ") + b"\n", 3),
        (b"Subject: x\n\n" + headers(60), 0),  # in the body: not a hop
        (b"\n" + headers(5), 0),  # no header section at all
        (b"X-Received: a\nReceived-SPF: pass\n\n", 0),
        (b"Received: a\n\tReceived: folded\n\n", 1),
    ],
)
def test_hop_count_any_chunking(message: bytes, count: int) -> None:
    for size in (1, 2, 7, 31, 33, 1 << 20):
        counter = HopCounter(limit=1000)
        for i in range(0, len(message), size):
            counter.feed(message[i : i + size])
        assert counter.count == count, size


def test_counting_stops_past_the_limit() -> None:
    counter = HopCounter(limit=50)
    counter.feed(headers(10_000))
    assert counter.exceeded and counter.count == 51


class Accept:
    def check_sender(self, session: SessionInfo, sender: str, params: dict[str, str]) -> None:
        return None

    def check_recipient(
        self, session: SessionInfo, envelope: Envelope, address: str, params: dict[str, str]
    ) -> RcptDecision:
        return RcptDecision(OK, True)


def run(body: bytes, bdat: bool) -> tuple[bytes, list[object]]:
    s = ServerSession(Settings("mx.test", max_hops=50), Accept(), SessionInfo("127.0.0.1", "s1"))
    s.start()
    s.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n")
    wire = body.replace(b"\n", b"\r\n")
    if bdat:
        half = len(wire) // 2
        s.receive_data(b"BDAT %d\r\n" % half + wire[:half])
        s.receive_data(b"BDAT %d LAST\r\n" % (len(wire) - half) + wire[half:])
    else:
        s.receive_data(b"DATA\r\n" + wire + b".\r\n")
    events = []
    while (e := s.next_event()) is not None:
        events.append(e)
    return s.data_to_send(), events


@pytest.mark.parametrize("bdat", [False, True])
@pytest.mark.parametrize(("hops", "refused"), [(50, False), (51, True)])
def test_too_many_hops_refused_at_end_of_data(bdat: bool, hops: int, refused: bool) -> None:
    out, events = run(headers(hops) + b"Subject: loop\n\nbody\n", bdat)
    if refused:
        assert out.endswith(b"554 5.4.6 Too many hops: mail loop detected\r\n")
        assert any(isinstance(e, MessageAborted) for e in events)
        assert not any(isinstance(e, MessageComplete) for e in events)
    else:
        assert any(isinstance(e, MessageComplete) for e in events)
        assert b"554" not in out
