"""The server process: event loop, signals, data folders, privileges, exit status.

run() is what ``daisymail serve`` calls. It makes the event loop (uvloop when installed)
with enough I/O threads, and serve() takes the signals from before the ports are bound,
prepares the data folders, has the App (daisymail.app) bind its listeners, drops root,
starts the sessions, and maps SIGTERM/SIGINT to App.stop() and SIGHUP to App.reload().
Apart from daisymail.app because it is the order of a process's life, not what the
parts are: it uses the App and the privilege helpers, and nothing below imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from daisymail import eventloop
from daisymail.app import App, StartupError, intake_dir
from daisymail.config import Config
from daisymail.observability import event, setup_logging
from daisymail.privileges import (
    PrivilegeError,
    ServiceUser,
    check_readable,
    drop,
    make_dirs,
    preload,
    service_user,
)
from daisymail.queue.spool import Queue
from daisymail.sdnotify import notify

log = logging.getLogger("daisymail")
WORKER_THREADS = 64


def prepare_dirs(cfg: Config, user: ServiceUser | None) -> None:
    """The data folders exist (missing ones made for the service user) and it may write."""
    c = cfg
    queue = Queue(str(c.path(c.queue.dir)))
    folders = [str(c.path(c.storage.mail_dir)), str(c.path(c.storage.spool_dir)), queue.directory]
    folders.append(intake_dir(c))
    try:
        make_dirs([*folders, queue.msg_dir, queue.env_dir], user)
    except PrivilegeError as e:
        raise StartupError(str(e)) from None


def drop_privileges(user: ServiceUser | None) -> None:
    """When root, become the service user: after binding the ports, before any session.

    What a session imports lazily is imported first, and a user that could not read
    Daisy's code or Python's library afterwards is refused with the path it cannot read.
    """
    if user is None:
        return
    preload()
    try:
        check_readable(user)
    except PrivilegeError as e:
        raise StartupError(str(e)) from None
    drop(user)
    event(log, "privileges.dropped", user=user.name, uid=user.uid, groups=list(user.groups))


async def serve(cfg: Config, config_path: str | None) -> None:
    loop = asyncio.get_running_loop()
    # Deliveries wait on fsync in worker threads; enough of them lets the group commit
    # of directory fsyncs batch many concurrent sessions (the default is cores + 4).
    loop.set_default_executor(ThreadPoolExecutor(max_workers=WORKER_THREADS))
    try:
        user = service_user(cfg.user)
    except PrivilegeError as e:
        raise StartupError(str(e)) from None
    app = App.build(cfg, config_path)
    # Signals are taken from before the ports are bound: a client (or a test, or an
    # admin's script) may see a port answer and send SIGHUP at once, and the default
    # action would kill the server. A reload asked for while starting runs once started.
    stop = asyncio.Event()
    reload_asked = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_asked.set)
    prepare_dirs(cfg, user)
    await app.start()
    if app.verdict_workers is not None:
        # As root: each becomes the user itself. With nothing to do yet, the first check
        # or signature (after a reload or a `dkim keygen`) starts them.
        await app.verdict_workers.start(user, spawn=app.mail_auth_busy())
    drop_privileges(user)
    await app.serve_sessions()
    loop.add_signal_handler(signal.SIGHUP, app.reload)
    if reload_asked.is_set():
        app.reload()
    event(log, "started", hostname=cfg.hostname, config=cfg.source, pid=os.getpid())
    notify("READY=1")
    await stop.wait()
    notify("STOPPING=1")
    await app.stop()
    event(log, "stopped")


def run(cfg: Config, config_path: str | None) -> int:
    setup_logging(cfg.log.level)
    try:
        eventloop.run(serve(cfg, config_path))
    except StartupError as e:
        event(log, "startup.failed", logging.ERROR, error=str(e))
        return 1
    except KeyboardInterrupt:
        pass
    with contextlib.suppress(Exception):
        logging.shutdown()
    return 0
