"""The mail-auth worker: SPF, DKIM, DMARC and ARC of port 25 mail, and DKIM signatures
of outgoing mail, in a process of its own.

A check is pure CPU once DNS answers are cached (canonicalization, hashing, an RSA
check, record parsing), and so is a signature (an RSA-2048 and an Ed25519 one). One
Python process runs Python on one core at a time, and C code that drops the GIL still
costs the event loop a handover per call: in the SMTP server this work delays every
other session. The server hands whole messages (up to one block) to a few of these
processes instead (``workers.py``). Each runs its own event loop and resolver cache and
takes any number of checks at once, so a slow DNS answer for one message never holds
up the others; a signature needs no waiting and is made at once.

Frames on stdin and stdout: a 4-byte big-endian length, then a pickle. The first frame
in is the setup ``("setup", settings, service user)``, answered by READY; a worker
started by root becomes the service user then, as the server does (it is started before
the server drops its privileges, so that the interpreter need not be one the service
user can run). Later setups (a reload) change the settings: ``authserv_id``,
``policy`` (None: checks are off), ``nameservers`` and ``timeout`` for checks,
``dkim_dir`` and ``seal_id`` for signatures. ``("check", id, ip, helo, mailfrom,
message)`` gets ``(id, Judgement.wire(), "")``; ``("sign", id, envelope sender,
message)`` gets ``(id, header fields, "")`` (b"" when the message is not to be signed);
either gets ``(id, None, error)`` when it failed. Both ends write what one turn of
their event loop produced in one write. Pickle is safe here: both ends are
this program, over a private pipe. The worker exits when stdin closes, after answering
what it was given.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daisymail import eventloop
from daisymail.dns import Resolver, from_config
from daisymail.mailauth.inbound import InboundCheck, Judgement
from daisymail.mailauth.keystore import KeyStore
from daisymail.mailauth.results import claims_own
from daisymail.mailauth.signing import sign_message
from daisymail.privileges import drop

READY = "ready"
_LEN = struct.Struct(">I")
MAX_FRAME = 16 << 20  # far above one message block and its verdict


def frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


class Frames:
    """Frames out of a byte stream as it arrives (sans I/O): the server decodes the
    replies in the pipe's data callback, with no reader task between the bytes and
    the request waiting for them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """The objects completed by ``data``; ValueError for a frame too large."""
        self._buffer += data
        out: list[Any] = []
        while len(self._buffer) >= _LEN.size:
            (size,) = _LEN.unpack_from(self._buffer)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes")
            end = _LEN.size + size
            if len(self._buffer) < end:
                break
            out.append(pickle.loads(self._buffer[_LEN.size : end]))
            del self._buffer[:end]
        return out


class TurnWriter:
    """Frames written together at the end of this turn of the event loop: under load
    several messages end in the same turn, and one write wakes the other process once
    for all of them (a wake-up costs a sleeping process more than a small check). Both
    ends of the pipe write through one."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._frames: list[bytes] = []

    def send(self, obj: object) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self.flush)
        self._frames.append(frame(obj))

    def flush(self) -> None:
        if self._frames:
            data, self._frames = b"".join(self._frames), []
            self._write(data)


class _Settings:
    """What a setup frame says, and what follows from it (a resolver, a key store),
    rebuilt only where a reload changed it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.resolver: Resolver | None = None
        self.keys: KeyStore | None = None

    def update(self, values: dict[str, Any]) -> None:
        old, self.values = self.values, values
        dns = (values.get("nameservers"), values.get("timeout"))
        if self.resolver is None or dns != (old.get("nameservers"), old.get("timeout")):
            self.resolver = from_config(list(dns[0] or []), float(dns[1] or 5.0))
        dkim_dir = values.get("dkim_dir")
        if dkim_dir is None:
            self.keys = None
        elif self.keys is None or dkim_dir != old.get("dkim_dir"):
            self.keys = KeyStore(Path(dkim_dir))


class _Requests(asyncio.Protocol):
    """Requests decoded from stdin as they arrive (as the server decodes replies); the
    replies go out through a TurnWriter."""

    def __init__(self, out: asyncio.WriteTransport) -> None:
        def write(data: bytes) -> None:
            if not out.is_closing():
                out.write(data)

        self.replies = TurnWriter(write)
        self.frames = Frames()
        self.settings: _Settings | None = None
        self.running: set[asyncio.Task[None]] = set()
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        try:
            requests = self.frames.feed(data)
        except ValueError:  # not from the server: nothing more can be trusted
            self.connection_lost(None)
            return
        for request in requests:
            self._request(request)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        """stdin closed: end once every check given has been answered."""
        if self.done.done():
            return
        if self.running:
            waiting = asyncio.ensure_future(asyncio.wait(set(self.running)))
            waiting.add_done_callback(lambda _: self._finish())
        else:
            self._finish()

    def _finish(self) -> None:
        self.replies.flush()
        if not self.done.done():
            self.done.set_result(None)

    def _request(self, request: Any) -> None:
        if request[0] == "setup":  # the first sets up; a later one is a reload
            if self.settings is None:
                user = request[2]
                if user is not None and os.geteuid() == 0:
                    drop(user)  # started before the server dropped its privileges
                self.settings = _Settings()
                self.settings.update(request[1])
                self.replies.send(READY)
            else:  # requests from now on use the new settings
                self.settings.update(request[1])
        elif self.settings is None:  # nothing before the setup
            self.connection_lost(None)
        elif request[0] == "sign":  # pure CPU, no waiting: done before the next frame
            self._sign(*request[1:])
        else:
            task = asyncio.get_running_loop().create_task(self._check(*request[1:]))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _check(self, rid: int, ip: str, helo: str, mailfrom: str, message: bytes) -> None:
        assert self.settings is not None
        try:
            v = self.settings.values
            authserv_id, resolver = v["authserv_id"], self.settings.resolver
            assert resolver is not None and v.get("policy") is not None, "checks are off"
            c = InboundCheck(
                resolver, authserv_id, ip=ip, helo=helo, mailfrom=mailfrom, policy=v["policy"]
            )
            c.feed(message)
            judged = Judgement.of(await c.verdict(), claims_own(c.fields, authserv_id))
            self.replies.send((rid, judged.wire(), ""))
        except Exception as e:  # the server judges this one itself
            self.replies.send((rid, None, f"{type(e).__name__}: {e}"))

    def _sign(self, rid: int, sender: str, message: bytes) -> None:
        assert self.settings is not None
        try:
            keys = self.settings.keys
            assert keys is not None, "signing is off"
            seal_id = self.settings.values.get("seal_id", "")
            self.replies.send((rid, sign_message(keys, message, sender, None, seal_id), ""))
        except Exception as e:  # the server signs this one itself
            self.replies.send((rid, None, f"{type(e).__name__}: {e}"))


async def _main() -> None:
    loop = asyncio.get_running_loop()
    # Frames go out on a copy of stdout; fd 1 itself becomes stderr, so that nothing a
    # library might print can corrupt them.
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    out_file = open(frames_fd, "wb", 0)  # noqa: SIM115 - owned by the transport
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, out_file)
    stdin = open(0, "rb", 0)  # noqa: SIM115 - owned by the transport
    _, requests = await loop.connect_read_pipe(lambda: _Requests(out), stdin)
    try:
        await requests.done
    finally:
        out.close()


def main() -> None:
    # The server owns the signals: Ctrl-C in a terminal or a reload reaches the whole
    # process group, and the worker ends when the server closes its stdin.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    eventloop.run(_main())  # uvloop, as the server: less CPU per request


if __name__ == "__main__":
    main()
