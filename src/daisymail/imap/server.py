"""asyncio glue for the IMAP core: sockets, TLS, logins, commands in worker threads, IDLE.

Logins resolve like POP3's (user@domain or user%domain) and go through the same
Authenticator, so throttling, timing and the reply for an unknown user or a wrong
password are the same. Mailbox commands run in a worker thread (they read and fsync
files). While a client idles, its session sleeps on the socket; one FolderWatch task
per folder looks at it twice a second and wakes the idling sessions when something
changed, which then send their news (watch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from daisymail.auth import Authenticator
from daisymail.directory.base import Directory
from daisymail.imap import append, sendfile
from daisymail.imap.commands import MailSession
from daisymail.imap.common import CommandFailed
from daisymail.imap.compress import Deflate
from daisymail.imap.protocol import (
    AppendChunk,
    AppendEnd,
    AppendStart,
    Close,
    Execute,
    IdleStart,
    ImapSession,
    LoginAttempt,
    Settings,
    StartCompress,
    StartTLS,
)
from daisymail.imap.quota import Quota
from daisymail.imap.responses import tagged
from daisymail.imap.stream import (
    LAZY_BATCH,
    SENDFILE_BATCH,
    FileLiteral,
    Lazy,
    Output,
    Segment,
    take_lines,
)
from daisymail.imap.watch import FolderWatch
from daisymail.limits import ConnectionLimiter
from daisymail.listener import Sessions
from daisymail.observability import event
from daisymail.store.base import StorageError
from daisymail.store.files import FileStore, is_maildir
from daisymail.store.imap_folders import AccountFolders, ImapFolder
from daisymail.store.imap_state import MailboxState

log = logging.getLogger("daisymail.imap")


@dataclass
class ImapService:
    name: str  # "imap" or "imaps"
    settings: Callable[[str, bool], Settings]  # (client ip, tls active) -> Settings
    directory: Directory
    store: FileStore
    state: MailboxState
    hostname: str
    limiter: ConnectionLimiter
    auth: Authenticator
    tls_context: ssl.SSLContext | None
    implicit_tls: bool = False
    timeout: float = 1800.0
    append_limit: int = 50 * 1024 * 1024
    quota: int = 0  # [storage] quota: octets per mailbox without its own limit (0: none)
    sessions: Sessions = field(init=False)
    watch: FolderWatch = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.name, log, self._refusal)
        self.watch = FolderWatch()

    @staticmethod
    def _refusal(why: str) -> bytes:
        return f"* BYE [UNAVAILABLE] {why}, try later\r\n".encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.sessions.accept(reader, writer, self.limiter, self._serve)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, sid: str
    ) -> None:
        await _Connection(self, reader, writer, ip, sid).run()


class _Connection:
    def __init__(
        self,
        svc: ImapService,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ip: str,
        sid: str,
    ) -> None:
        self.svc, self.reader, self.writer, self.ip, self.sid = svc, reader, writer, ip, sid
        self.tls = svc.implicit_tls
        self.session = ImapSession(svc.settings(ip, self.tls))
        self.mail: MailSession | None = None
        self.account = ""
        self.pending: append.Pending | None = None  # a streamed APPEND under way
        self.deflate: Deflate | None = None  # COMPRESS=DEFLATE once the client asked
        self.busy = asyncio.Lock()  # one piece of mailbox work at a time: commands, news
        self.watched: ImapFolder | None = None  # the folder idled on, while registered
        self.pushing: asyncio.Task[None] | None = None  # news being sent while idling

    async def run(self) -> None:
        event(log, "imap.connect", sid=self.sid, client=self.ip, service=self.svc.name)
        try:
            self.session.start()
            await self._flush()
            while True:
                ev = self.session.next_event()
                if ev is None and self.deflate is not None and self.deflate.backlog:
                    self.session.receive_data(self.deflate.inflate(b""))
                    continue
                if ev is None:
                    await self._flush()
                    try:
                        data = await self.svc.sessions.read(
                            self.reader, self.writer, 65536, self.svc.timeout, busy=False
                        )
                    except TimeoutError:
                        event(log, "imap.timeout", sid=self.sid, client=self.ip)
                        self.session.timeout()
                        continue
                    except (ConnectionError, ssl.SSLError):
                        data = b""
                    if self.deflate is not None and data:
                        data = self.deflate.inflate(data)
                        if not data:
                            continue  # a partial deflate block: wait for the rest
                    self.session.receive_data(data)
                    if self.watched is not None and not self.session.idling:
                        self._unwatch()
                    continue
                if isinstance(ev, Close):
                    await self._flush()
                    break
                async with self.busy:
                    await self._handle(ev)
                await self._flush()
        except (ConnectionError, ssl.SSLError):
            pass
        except Exception:
            log.exception("imap.error sid=%s client=%s", self.sid, self.ip)
            with contextlib.suppress(Exception):
                self._write(b"* BYE [SERVERBUG] internal error, try again later\r\n")
                await self.svc.sessions.drain(self.writer)
        finally:
            self._unwatch()
            if self.pushing is not None:
                self.pushing.cancel()
            if self.pending is not None:
                self.pending.spool.discard()
            event(log, "imap.disconnect", sid=self.sid, client=self.ip, user=self.account or None)

    def _write(self, data: bytes) -> None:
        """Every octet to the client goes through here or _write_run (compressed once
        COMPRESS is on)."""
        self._check_open()
        if self.deflate is not None:
            data = self.deflate.compress(data)
        self.writer.write(data)

    def _check_open(self) -> None:
        """A reset may close the transport between two writes of one reply (while a
        worker thread reads the next piece); uvloop raises RuntimeError on a write to a
        closed transport, so it is ended here as the disconnect it is."""
        if self.writer.transport.is_closing():
            raise ConnectionResetError("the client went away")

    async def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            self._write(out)
            await self.svc.sessions.drain(self.writer)

    def _wake(self) -> None:
        """The watched folder may have news: send it, unless that is under way."""
        if self.pushing is None:
            self.pushing = asyncio.get_running_loop().create_task(self._push())

    async def _push(self) -> None:
        try:
            async with self.busy:
                if self.session.idling:  # not after DONE: no EXPUNGE between commands
                    await self._idle_news()
        except (ConnectionError, ssl.SSLError):
            pass  # the main loop finds the connection closed
        finally:
            self.pushing = None

    def _unwatch(self) -> None:
        if self.watched is not None:
            self.svc.watch.unwatch(self.watched, self._wake)
            self.watched = None

    async def _idle_news(self) -> None:
        if self.mail is None:
            return
        try:
            news = await asyncio.to_thread(self.mail.idle_news)
        except OSError as e:  # a full disk or a vanished folder: try again at the next poll
            event(log, "imap.idle.error", logging.WARNING, sid=self.sid, error=str(e))
            return
        if news:
            self.session.updates(news)
            await self._flush()

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, StartTLS):
            await self._flush()
            assert self.svc.tls_context is not None
            try:
                await self.writer.start_tls(self.svc.tls_context)
            except (ssl.SSLError, ConnectionError, OSError) as e:
                event(log, "imap.tls.failed", sid=self.sid, client=self.ip, error=str(e))
                raise ConnectionError("TLS handshake failed") from None
            self.tls = True
            self.session.tls_started()
        elif isinstance(ev, LoginAttempt):
            await self._login(ev)
        elif isinstance(ev, IdleStart):
            assert self.mail is not None
            news = await asyncio.to_thread(self.mail.idle_news_now)
            self.session.updates(news)
            self.session.idle_started()
            self._unwatch()  # a DONE that came in compressed may have left one
            if self.mail.view is not None:
                self.watched = self.mail.view.folder
                self.svc.watch.watch(self.watched, self._wake)
        elif isinstance(ev, Execute):
            assert self.mail is not None
            mail = self.mail
            output: Output
            try:
                output, selected = await asyncio.to_thread(mail.run_safely, ev)
            except Exception:
                # A bug must cost one command, not the session (and never a traceback).
                log.exception("imap.command.error sid=%s command=%s", self.sid, ev.name)
                output, selected = tagged(ev.tag, "NO", "internal error", "SERVERBUG"), None
            if ev.name in ("SELECT", "EXAMINE", "CLOSE", "UNSELECT"):
                event(log, f"imap.{ev.name.lower()}", sid=self.sid, user=self.account)
            if isinstance(output, Lazy):
                await self._send_lazy(output, ev.name)
                output = b""
            elif isinstance(output, list):
                await self._stream(output)
                output = b""
            self.session.executed(output, selected)
        elif isinstance(ev, StartCompress):
            await self._flush()  # the OK goes out uncompressed
            self.deflate = Deflate()
            event(log, "imap.compress", sid=self.sid, user=self.account)
            if ev.pending:
                self.session.receive_data(self.deflate.inflate(ev.pending))
        elif isinstance(ev, AppendStart | AppendChunk | AppendEnd):
            await self._append(ev)

    async def _stream(self, segments: list[Segment]) -> None:
        """A reply with message files in it: a file that needs no conversion goes to a
        plain connection by sendfile, any other chunk by chunk, read in a worker thread;
        all with the shared write timeout."""
        await self._flush()
        run: list[bytes] = []  # octets in a row: one writev, nothing joined or copied
        sender = sendfile.FileSender(self.writer, self.svc.sessions)
        try:
            for seg in segments:
                if isinstance(seg, bytes):
                    run.append(seg)
                    continue
                run.append(seg.header())
                self._write_run(run)
                run = []
                if seg.as_is and self._sendfile_ok():
                    await sender.send(seg)
                else:
                    await self._send_chunks(seg)
            self._write_run(run)
        finally:
            for seg in segments:  # files not reached when the client went
                if isinstance(seg, FileLiteral):
                    seg.file.close()
            sender.close()
        await self.svc.sessions.drain(self.writer)

    async def _send_chunks(self, lit: FileLiteral) -> None:
        chunks = lit.chunks()
        try:
            while chunk := await asyncio.to_thread(next, chunks, b""):
                self._write(chunk)
                await self.svc.sessions.drain(self.writer)
        finally:
            chunks.close()

    def _sendfile_ok(self) -> bool:
        """Files may go straight to the socket: no TLS or COMPRESS to pass them through."""
        return self.deflate is None and not self.tls and sendfile.usable(self.writer)

    def _write_run(self, run: list[bytes]) -> None:
        """Octets in a row: one writev of them as they are (joining them would copy a
        reply's every octet once more); compressed as one piece under COMPRESS."""
        if self.deflate is not None:
            self._write(b"".join(run))
        elif run:
            self._check_open()
            self.writer.writelines(run)

    async def _send_lazy(self, reply: Lazy, name: str) -> None:
        """A reply made while it is sent, a batch of lines (about LAZY_BATCH octets) a
        worker thread each; trouble halfway ends it with the tagged NO (the lines sent
        so far stand)."""
        await self._flush()
        self._write(reply.head)
        # Room for a batch or two in the transport, so that the next batch is made in
        # the worker while the last one is still being sent (the default high-water
        # mark, 64 KB, would make every drain wait for nearly all of it).
        transport = self.writer.transport
        transport.set_write_buffer_limits(high=2 * LAZY_BATCH)
        try:
            while True:
                sendfile = self._sendfile_ok()
                budget = SENDFILE_BATCH if sendfile else LAZY_BATCH
                batch = await asyncio.to_thread(take_lines, reply.lines, budget, sendfile)
                segments = batch.segments
                if batch.trouble is not None:
                    segments.append(self._trouble(reply.tag, name, batch.trouble))
                if segments:
                    await self._stream(segments)
                if batch.done:
                    return
        finally:
            if not transport.is_closing():
                transport.set_write_buffer_limits()

    def _trouble(self, tag: str, name: str, e: Exception) -> bytes:
        """The tagged NO for a reply that failed halfway."""
        if isinstance(e, CommandFailed):
            return tagged(tag, "NO", str(e), e.code)
        if isinstance(e, OSError | StorageError):
            return tagged(tag, "NO", f"storage error: {e}", "SERVERBUG")
        log.error("imap.command.error sid=%s command=%s", self.sid, name, exc_info=e)
        return tagged(tag, "NO", "internal error", "SERVERBUG")

    async def _append(self, ev: AppendStart | AppendChunk | AppendEnd) -> None:
        """A streamed APPEND: checked, then written to tmp/ as the octets arrive."""
        assert self.mail is not None
        mail = self.mail
        if isinstance(ev, AppendStart):
            try:
                result = await asyncio.to_thread(append.begin, mail, ev.tag, ev.args, ev.size)
            except (OSError, StorageError) as e:
                reply = tagged(ev.tag, "NO", f"storage error: {e}", "SERVERBUG")
                self.session.append_refused(reply)
                return
            if isinstance(result, bytes):
                self.session.append_refused(result)
                return
            self.pending = result
            self.session.append_accepted()
            return
        pending = self.pending
        if pending is None:  # the spool failed earlier: the literal is dropped
            if isinstance(ev, AppendEnd):
                reply = tagged(ev.tag, "NO", "the message could not be stored", "SERVERBUG")
                self.session.executed(reply)
            return
        if isinstance(ev, AppendChunk):
            try:
                await asyncio.to_thread(pending.spool.write, ev.data)
            except OSError as e:
                event(log, "imap.append.error", logging.ERROR, sid=self.sid, error=str(e))
                pending.spool.discard()
                self.pending = None
            return
        self.pending = None
        try:
            reply = await asyncio.to_thread(append.finish, mail, ev.tag, pending, ev.ok)
        except (OSError, StorageError) as e:
            reply = tagged(ev.tag, "NO", f"storage error: {e}", "SERVERBUG")
        event(
            log,
            "imap.append.streamed",
            sid=self.sid,
            user=self.account,
            size=pending.spool.expected,
        )
        self.session.executed(reply)

    async def _login(self, ev: LoginAttempt) -> None:
        login = await self.svc.auth.verify(self.ip, ev.user, ev.password, sid=self.sid)
        snap = self.svc.directory.snapshot()
        if login is None:
            event(
                log,
                "imap.login.failed",
                logging.WARNING,
                sid=self.sid,
                client=self.ip,
                user=ev.user,
                mechanism=ev.mechanism,
            )
            self.session.login_result(False)
            return
        box = snap.mailboxes.get(login.mailbox)
        if box is None:
            event(log, "imap.login.nomailbox", logging.ERROR, sid=self.sid, user=login.address)
            self.session.login_result(False, "UNAVAILABLE", "mailbox not available, try later")
            return
        if not is_maildir(box):
            event(
                log,
                "imap.login.mbox",
                logging.WARNING,
                sid=self.sid,
                user=login.address,
                mailbox=box.name,
            )
            self.session.login_result(
                False,
                "UNAVAILABLE",
                "this mailbox is an mbox file; IMAP needs Maildir: "
                f"run daisymail mailbox convert {box.name} --to maildir",
            )
            return
        try:
            folders = AccountFolders(self.svc.store.resolve_path(box), self.svc.state)
            await asyncio.to_thread(folders.ensure_defaults)
        except (StorageError, OSError) as e:
            event(
                log,
                "imap.login.storage",
                logging.ERROR,
                sid=self.sid,
                user=login.address,
                error=str(e),
            )
            self.session.login_result(False, "UNAVAILABLE", "mailbox not available, try later")
            return
        self.mail = MailSession(folders, self.svc.append_limit, Quota(self.svc.quota))
        self.account = login.address
        event(
            log,
            "imap.login",
            sid=self.sid,
            client=self.ip,
            user=login.address,
            mailbox=box.name,
            mechanism=ev.mechanism,
            tls=self.tls,
        )
        self.session.login_result(True)
