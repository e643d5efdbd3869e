"""The mail-auth workers' framing (mailauth/worker.py): what one end writes with
frame() the other decodes with Frames, however the pipe splits or joins the bytes."""

from __future__ import annotations

import pytest

from daisymail.mailauth.worker import MAX_FRAME, READY, Frames, frame

OBJECTS = [READY, (1, ("pass", b"x" * 5000), ""), (2, None, "ValueError: no"), {"k": [1, 2]}]


def test_frames_split_at_every_byte() -> None:
    wire = b"".join(frame(o) for o in OBJECTS)
    frames, out = Frames(), []
    for i in range(len(wire)):
        out += frames.feed(wire[i : i + 1])
    assert out == OBJECTS


def test_frames_joined_in_one_read_and_a_partial_one_kept() -> None:
    wire = b"".join(frame(o) for o in OBJECTS)
    frames = Frames()
    assert frames.feed(wire + frame("next")[:3]) == OBJECTS
    assert frames.feed(frame("next")[3:]) == ["next"]
    assert frames.feed(b"") == []


def test_a_frame_too_large_is_refused_before_its_bytes_arrive() -> None:
    with pytest.raises(ValueError, match="frame of"):
        Frames().feed((MAX_FRAME + 1).to_bytes(4, "big"))
