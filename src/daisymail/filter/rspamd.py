"""Spam checks by rspamd over its HTTP protocol (``POST /checkv2``), and what they mean.

The SMTP server asks ``Rspamd.check`` after the final dot, before its reply, with the
staged spool file; the file is streamed to rspamd, never read whole. ``decide`` turns
rspamd's action into Daisy's: refuse (554/451), file in Junk with ``X-Spam-*`` fields,
or accept. A filter that is down, slow or answers nonsense never costs a message: it is
accepted with a field saying it was not checked.

The HTTP client is a few lines of asyncio (one request per connection, HTTP/1.1 with
``Connection: close``): rspamd is local and the protocol needs nothing more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from daisymail.mailauth.canon import split_fields
from daisymail.observability import event
from daisymail.store.durable import rewrite_header

log = logging.getLogger("daisymail.smtp")
READ_SIZE = 256 * 1024
MAX_RESPONSE = 1024 * 1024  # a check result is a few kB


class FilterError(Exception):
    """rspamd could not be asked or did not answer a check."""


@dataclass(frozen=True)
class CheckResult:
    action: str  # "reject", "soft reject", "rewrite subject", "add header", "greylist", ...
    score: float
    required: float
    symbols: tuple[str, ...] = ()
    message: str = ""  # rspamd's smtp_message, when it gives one


@dataclass(frozen=True)
class Envelope:
    """What rspamd is told besides the message."""

    ip: str
    helo: str
    sender: str
    recipients: Sequence[str]
    user: str = ""  # the logged-in user, if any
    queue_id: str = ""


@dataclass(frozen=True)
class Decision:
    action: str  # accept, junk, reject, defer
    header: bytes  # X-Spam-* fields to prepend, LF-terminated
    reply: tuple[int, str, str] | None = None
    result: CheckResult | None = field(default=None, compare=False)


def _one_line(text: str) -> str:
    """No control characters (CR, LF): client-given text cannot start a new line."""
    return "".join(c if c.isprintable() else " " for c in text)


def _clean(text: str) -> str:
    """One header-safe line of at most 200 characters, for replies and our fields."""
    return _one_line(text)[:200]


def decide(result: CheckResult | None, error: str = "") -> Decision:
    """Daisy's decision for rspamd's answer; None (with error) when there was none."""
    if result is None:
        why = _clean(error or "no answer")
        return Decision("accept", f"X-Spam-Status: Unchecked (rspamd: {why})\n".encode())
    action = result.action
    status = f"score={result.score:.2f} required={result.required:.2f} action={action!r}"
    symbols = ",".join(result.symbols)
    if action in ("reject", "soft reject", "greylist"):
        text = _clean(result.message) or "Message refused as spam"
        if action == "reject":
            return Decision("reject", b"", (554, "5.7.1", text), result)
        if action == "greylist":
            text = _clean(result.message) or "Greylisted, try again later"
        return Decision("defer", b"", (451, "4.7.1", text), result)
    spam = action in ("add header", "rewrite subject")
    fields = f"X-Spam-Status: {'Yes' if spam else 'No'}, {_clean(status)}\n"
    if spam:
        fields = "X-Spam-Flag: YES\n" + fields
    if symbols:
        fields += f"X-Spam-Symbols: {_clean(symbols)[:900]}\n"
    return Decision("junk" if spam else "accept", fields.encode(), None, result)


def parse_result(body: bytes) -> CheckResult:
    """rspamd's /checkv2 JSON; FilterError when it is not one."""
    try:
        data = json.loads(body)
        action = data["action"]
        if not isinstance(action, str):
            raise TypeError("action")
        score = float(data.get("score", 0.0))
        required = float(data.get("required_score", 0.0))
        symbols = data.get("symbols") or {}
        names = tuple(sorted(str(s) for s in symbols)) if isinstance(symbols, dict) else ()
        messages = data.get("messages") or {}
        message = messages.get("smtp_message", "") if isinstance(messages, dict) else ""
    except (ValueError, TypeError, KeyError) as e:
        raise FilterError(f"not a check result: {e}") from None
    return CheckResult(action, score, required, names, str(message))


class Rspamd:
    """One rspamd worker at ``url`` (``http://HOST:PORT``, optionally with a path)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an http:// URL expected, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/") + "/checkv2"
        self.timeout = timeout

    async def check(self, path: str, env: Envelope) -> CheckResult:
        """Ask rspamd about the message in ``path``; FilterError or TimeoutError."""
        async with asyncio.timeout(self.timeout):
            return await self._check(path, env)

    async def _check(self, path: str, env: Envelope) -> CheckResult:
        size = os.path.getsize(path)
        headers = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Connection: close",
            f"Content-Length: {size}",
            f"IP: {env.ip}",
            f"Helo: {env.helo or 'unknown'}",
            f"From: <{env.sender}>",
            *(f"Rcpt: <{r}>" for r in env.recipients),
        ]
        if env.user:
            headers.append(f"User: {env.user}")
        if env.queue_id:
            headers.append(f"Queue-Id: {env.queue_id}")
        head = "".join(f"{_one_line(h)}\r\n" for h in headers) + "\r\n"
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as e:
            raise FilterError(f"cannot connect: {e.strerror or e}") from None
        try:
            writer.write(head.encode("utf-8", "replace"))
            with open(path, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, READ_SIZE):
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
            return await self._response(reader)
        except (OSError, asyncio.IncompleteReadError) as e:
            raise FilterError(f"connection failed: {e}") from None
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> CheckResult:
        status = await reader.readline()
        parts = status.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise FilterError("not an HTTP response")
        length: int | None = None
        chunked = False
        while True:
            line = await reader.readline()
            if not line:
                raise FilterError("response cut short")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            body = await _read_chunked(reader)
        elif length is not None:
            if length > MAX_RESPONSE:
                raise FilterError("response too large")
            body = await reader.readexactly(length)
        else:
            body = await reader.read(MAX_RESPONSE)
        if parts[1] != b"200":
            raise FilterError(f"HTTP {parts[1].decode('ascii', 'replace')}")
        return parse_result(body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise FilterError("bad chunked response") from None
        if size == 0:
            return bytes(body)
        if len(body) + size > MAX_RESPONSE:
            raise FilterError("response too large")
        body += await reader.readexactly(size)
        await reader.readline()


OUR_FIELDS = (b"x-spam-flag", b"x-spam-status", b"x-spam-symbols")


def strip_our_fields(path: str) -> bool:
    """Remove X-Spam-* fields of the kinds Daisy writes from the message in ``path``, so
    the ones users see are Daisy's; True if there were any. Blocking."""

    def edit(header: bytes) -> bytes | None:
        if b"x-spam-" not in header.lower():
            return None
        fields = split_fields(header)
        kept = [x for x in fields if x.partition(b":")[0].strip().lower() not in OUR_FIELDS]
        return b"".join(kept) if len(kept) != len(fields) else None

    return rewrite_header(path, edit)


class SpamFilter:
    """The check as the SMTP server uses it: one log line, and a decision whatever
    happens to rspamd."""

    def __init__(self, url: str, timeout: float) -> None:
        self.rspamd = Rspamd(url, timeout)

    async def judge(self, path: str, env: Envelope, sid: str) -> Decision:
        """Our X-Spam-* fields that came with the message are removed first."""
        try:
            await asyncio.to_thread(strip_our_fields, path)
        except OSError as e:
            event(log, "smtp.filter.unavailable", logging.WARNING, sid=sid, error=str(e))
            return decide(None, "cannot read the message")
        try:
            result = await self.rspamd.check(path, env)
        except (FilterError, TimeoutError) as e:
            why = "timeout" if isinstance(e, TimeoutError) else str(e)
            event(log, "smtp.filter.unavailable", logging.WARNING, sid=sid, error=why)
            return decide(None, why)
        decision = decide(result)
        event(
            log,
            "smtp.filter",
            sid=sid,
            client=env.ip,
            action=decision.action,
            rspamd=result.action,
            score=f"{result.score:.2f}",
        )
        return decision
