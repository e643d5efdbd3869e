"""asyncio glue for the POP3 protocol core: sockets, TLS, logins, streaming, QUIT commit.

Logins look like teapop's (user@domain or user%domain); an unknown user and a wrong
password cost the same time and get the same reply. Message bodies stream from the
mailbox file through format_message (CRLF, dot-stuffing) without loading them whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import logging
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from daisymail.auth import Authenticator
from daisymail.directory.base import Directory
from daisymail.directory.passwords import (
    plaintext_secret,
)
from daisymail.limits import ConnectionLimiter
from daisymail.listener import Sessions
from daisymail.observability import event
from daisymail.pop3.protocol import (
    Close,
    Commit,
    LoginAttempt,
    LoginFailed,
    LoginOk,
    Pop3Session,
    ReadToEnd,
    SendMessage,
    Settings,
    StartTLS,
    format_message,
)
from daisymail.store.base import MailboxInUse, MailboxStore, MaildropView, StorageError, ViewOptions

log = logging.getLogger("daisymail.pop3")


LOCAL_CLIENTS = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})


@functools.lru_cache(maxsize=1024)
def is_loopback(ip: str) -> bool:
    """A client on this machine, by the addresses local programs connect from.

    Only 127.0.0.1 and ::1 count (as for the default relay networks), not all of
    127.0.0.0/8, so that a listener reached through another loopback address behaves
    like a remote one."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr in LOCAL_CLIENTS


@dataclass
class Pop3Service:
    name: str  # "pop3" or "pop3s"
    settings: Callable[[str, bool], Settings]  # (client ip, tls active) -> Settings
    directory: Directory
    store: MailboxStore
    view_options: Callable[[], ViewOptions]
    hostname: str
    limiter: ConnectionLimiter
    auth: Authenticator
    tls_context: ssl.SSLContext | None
    implicit_tls: bool = False
    timeout: float = 600.0
    sessions: Sessions = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.name, log, self._refusal)

    @staticmethod
    def _refusal(why: str) -> bytes:
        return f"-ERR [SYS/TEMP] {why}, try later\r\n".encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.sessions.accept(reader, writer, self.limiter, self._serve)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, sid: str
    ) -> None:
        await _Connection(self, reader, writer, ip, sid).run()


class _Connection:
    def __init__(
        self,
        svc: Pop3Service,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ip: str,
        sid: str,
    ) -> None:
        self.svc, self.reader, self.writer, self.ip, self.sid = svc, reader, writer, ip, sid
        self.tls = svc.implicit_tls
        self.settings = svc.settings(ip, self.tls)
        # The APOP timestamp is shown, and used, only when APOP is on.
        self.banner = (
            f"<{int(time.time())}.{secrets.token_hex(4)}@{svc.hostname}>"
            if self.settings.apop_enabled
            else ""
        )
        self.session = Pop3Session(self.settings, timestamp_banner=self.banner)
        self.view: MaildropView | None = None
        self.account = ""
        self.streaming = False  # a message is going out: no reply line may be written

    async def run(self) -> None:
        event(log, "pop3.connect", sid=self.sid, client=self.ip, service=self.svc.name)
        try:
            self.session.start()
            await self._flush()
            while True:
                ev = self.session.next_event()
                if ev is None:
                    await self._flush()
                    try:
                        data = await self.svc.sessions.read(
                            self.reader, self.writer, 65536, self.svc.timeout
                        )
                    except TimeoutError:
                        event(log, "pop3.timeout", sid=self.sid, client=self.ip)
                        self.session.timeout()
                        await self._flush()
                        continue
                    except (ConnectionError, ssl.SSLError):
                        data = b""
                    self.session.receive_data(data)
                    if not data and self.session.next_event() is None:
                        break
                    continue
                if isinstance(ev, Close):
                    await self._flush()
                    break
                await self._handle(ev)
                await self._flush()
        except (ConnectionError, ssl.SSLError):
            pass
        except Exception:
            log.exception("pop3.error sid=%s client=%s", self.sid, self.ip)
            if self.streaming:
                self.writer.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    self.writer.write(b"-ERR [SYS/TEMP] internal error, try again later\r\n")
                    await self.svc.sessions.drain(self.writer)
        finally:
            if self.view is not None:
                self.view.close()  # closes a descriptor: no thread needed
                self.view = None
            event(log, "pop3.disconnect", sid=self.sid, client=self.ip, user=self.account or None)

    async def _flush(self) -> None:
        """Send the queued replies; wait for the client only when the socket did not
        take them all at once (the usual case for one reply line needs no wait)."""
        out = self.session.data_to_send()
        if out:
            self.writer.write(out)
            if self.writer.transport.get_write_buffer_size():
                await self.svc.sessions.drain(self.writer)

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, StartTLS):
            await self._flush()
            assert self.svc.tls_context is not None
            try:
                await self.writer.start_tls(self.svc.tls_context)
            except (ssl.SSLError, ConnectionError, OSError) as e:
                event(log, "pop3.tls.failed", sid=self.sid, client=self.ip, error=str(e))
                raise ConnectionError("TLS handshake failed") from None
            self.tls = True
            self.session.tls_started()
        elif isinstance(ev, LoginAttempt):
            self.session.login_result(await self._login(ev))
        elif isinstance(ev, SendMessage):
            await self._send(ev)
        elif isinstance(ev, Commit):
            ok = await self._commit(ev.deleted)
            self.session.commit_result(ok)

    async def _login(self, ev: LoginAttempt) -> LoginOk | LoginFailed:
        if ev.apop_digest is not None:
            attempt = self.svc.auth.resolve(ev.user_name)
            await self.svc.auth.before_attempt(self.ip, attempt.key)
            login = attempt.login
            secret = plaintext_secret(login.password_hash) if login is not None else None
            ok = False
            if secret is not None:
                expected = hashlib.md5((self.banner + secret).encode()).hexdigest()
                ok = secrets.compare_digest(expected, ev.apop_digest)
            if not ok:
                await self.svc.auth.failed(self.ip, attempt.key)
                login = None
        else:
            login = await self.svc.auth.verify(
                self.ip, ev.user_name, ev.password or "", sid=self.sid
            )
        if login is None:
            event(
                log,
                "pop3.login.failed",
                logging.WARNING,
                sid=self.sid,
                client=self.ip,
                user=ev.user_name,
                mechanism=ev.mechanism,
            )
            return LoginFailed(in_use=False, temporary=False)
        box = self.svc.directory.snapshot().mailboxes.get(login.mailbox)
        if box is None:
            event(
                log,
                "pop3.login.nomailbox",
                logging.ERROR,
                sid=self.sid,
                user=login.address,
                mailbox=login.mailbox,
            )
            return LoginFailed(in_use=False, temporary=True)
        options = self.svc.view_options()
        try:
            # A polling client's unchanged Maildir opens from the listing cache with a few
            # stats and a lock, on the loop; anything that must list goes to a thread.
            view = self.svc.store.open_cached_view(box, options)
            if view is None:
                view = await asyncio.to_thread(self.svc.store.open_view, box, options)
            self.view = view
        except MailboxInUse:
            event(log, "pop3.login.inuse", sid=self.sid, client=self.ip, user=login.address)
            return LoginFailed(in_use=True, temporary=True)
        except (StorageError, OSError) as e:
            event(
                log,
                "pop3.login.storage",
                logging.ERROR,
                sid=self.sid,
                user=login.address,
                error=str(e),
            )
            return LoginFailed(in_use=False, temporary=True)
        self.account = login.address
        msgs = self.view.messages
        event(
            log,
            "pop3.login",
            sid=self.sid,
            client=self.ip,
            user=login.address,
            mailbox=box.name,
            messages=len(msgs),
            tls=self.tls,
        )
        return LoginOk(messages=msgs)

    async def _send(self, ev: SendMessage) -> None:
        """Stream a message, reading it in a worker thread one block at a time.

        The +OK is out before the first byte is read, so a storage error from here on
        (the file removed or cut short by another program) cannot be told in the
        protocol: an -ERR line would become part of the message. The connection is
        aborted instead; the client sees an incomplete response, never a wrong message.
        """
        assert self.view is not None
        await self._flush()
        lines = ReadToEnd(self.view.lines(ev.index))
        blocks = format_message(lines, ev.top_lines)
        self.streaming = True
        try:
            while True:
                try:
                    block = await asyncio.to_thread(next, blocks, None)
                except (StorageError, OSError) as e:
                    event(
                        log,
                        "pop3.send.failed",
                        logging.ERROR,
                        sid=self.sid,
                        user=self.account,
                        message=ev.index + 1,
                        error=str(e),
                    )
                    self.writer.transport.abort()
                    raise ConnectionAbortedError("message unreadable after +OK") from None
                if block is None:
                    break
                self.writer.write(block)
                await self.svc.sessions.drain(self.writer)
        finally:
            await asyncio.to_thread(blocks.close)
        self.writer.write(b".\r\n")
        await self.svc.sessions.drain(self.writer)
        self.streaming = False
        if ev.top_lines is not None:
            self.session.top_sent(ev.index, lines.whole)

    def _expired(self) -> set[int]:
        """teapop -e: messages delivered more than expire_days ago go at QUIT."""
        days = self.settings.expire_days
        if not days or self.view is None:
            return set()
        cutoff = time.time() - days * 86400
        return {
            i
            for i, m in enumerate(self.view.messages)
            if m.received is not None and m.received < cutoff
        }

    async def _commit(self, deleted: frozenset[int]) -> bool:
        """Remove the doomed messages in a worker thread; a QUIT that removes nothing
        (a polling client's usual one) only closes the view, which needs no thread."""
        assert self.view is not None
        view = self.view
        doomed = set(deleted) | self._expired()
        try:
            if doomed:
                await asyncio.to_thread(view.commit, doomed)
        except (StorageError, OSError) as e:
            event(
                log,
                "pop3.commit.failed",
                logging.ERROR,
                sid=self.sid,
                user=self.account,
                error=str(e),
            )
            return False
        finally:
            view.close()
            self.view = None
        event(
            log, "pop3.quit", sid=self.sid, client=self.ip, user=self.account, deleted=len(doomed)
        )
        return True
