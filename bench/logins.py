"""The login rows: POP3 logins per second for polling clients, Daisy against Dovecot.

The polling pattern: 20 accounts, each logging in again and again with the same password
(USER, PASS, QUIT, repeat), by 1 client or by 20 clients cycling over them (bench/pop3_load
logins mode). Daisy runs with its login cache on (the default) and off (``cache_ttl = 0``);
Dovecot with its defaults (a login process per connection, no auth cache) and with its
best settings for this load (processes reused, auth cache on), each with the bench users'
argon2id hashes and with a PLAIN passdb, where a login costs no hash at all. Every
configuration is (re)started, and one with a cache is warmed with one login per account,
so the figures are for the steady state of polling; configurations take turns in each
repetition.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pop3_load
from common import WORK, User
from servers import Daisy, Dovecot, mail_ids

POLL_ACCOUNTS = 20
CLIENTS = (1, 20)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def daisy_cache(daisy: Daisy, ttl: int) -> None:
    """Restart Daisy with `[auth] cache_ttl = ttl` (unless it already runs with it)."""
    old = daisy.conf.read_text()
    text, n = re.subn(r"^cache_ttl = \d+", f"cache_ttl = {ttl}", old, flags=re.M)
    if n != 1:
        raise RuntimeError(f"{daisy.conf}: no [auth] cache_ttl line to set")
    if text == old and daisy.proc is not None and daisy.proc.poll() is None:
        return
    daisy.conf.write_text(text)
    daisy.stop()
    daisy.start()


def dovecot_profile(dovecot: Dovecot, users: list[User], *, best: bool, plain: bool) -> None:
    """Restart Dovecot with its defaults or its best settings, argon2id or PLAIN."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
    from configure import write_dovecot  # bench/peers/configure.py

    uid, gid = mail_ids()
    dovecot.stop()
    write_dovecot(WORK, users, uid, gid, best=best, plain=plain)
    dovecot.start()


async def _warm(port: int, creds: list[tuple[str, str]]) -> None:
    for user, password in creds:
        await pop3_load._session("127.0.0.1", port, user, password, False)


def login_phase(
    daisy: Daisy, dovecot: Dovecot | None, bench_users: list[User], reps: int, seconds: float
) -> list[dict[str, object]]:
    """Rows of {server, variant, hash, concurrency, logins_per_s, ...}. Leaves Daisy with
    its cache on and Dovecot as bench/peers/configure.py writes it (defaults, argon2id)."""
    creds = [(u.address, u.password) for u in bench_users[:POLL_ACCOUNTS]]
    # (server, variant, hash, port, configure)
    targets: list[tuple[str, str, str, int, Callable[[], None]]] = [
        ("daisy", "cache on", "argon2id", daisy.pop3_port, lambda: daisy_cache(daisy, 3600)),
        ("daisy", "cache off", "argon2id", daisy.pop3_port, lambda: daisy_cache(daisy, 0)),
    ]
    if dovecot is not None:
        for best in (False, True):
            for plain in (False, True):
                targets.append(
                    (
                        "dovecot",
                        "best" if best else "defaults",
                        "PLAIN" if plain else "argon2id",
                        dovecot.pop3_port,
                        lambda b=best, p=plain: dovecot_profile(  # type: ignore[misc]
                            dovecot, bench_users, best=b, plain=p
                        ),
                    )
                )
    out: list[dict[str, object]] = []
    try:
        for rep in range(reps):
            for server, variant, scheme, port, configure in targets:
                configure()
                if variant in ("cache on", "best"):
                    asyncio.run(_warm(port, creds))
                for conc in CLIENTS:
                    r = asyncio.run(
                        pop3_load.run_level("127.0.0.1", port, creds, conc, seconds, False)
                    )
                    r.update(server=server, variant=variant, hash=scheme, rep=rep)  # type: ignore[arg-type]
                    out.append(r)
                    log(
                        f"logins {server:8} {variant:9} {scheme:8} x{conc:<2} "
                        f"{r['logins_per_s']} logins/s"
                    )
    finally:
        daisy_cache(daisy, 3600)
        if dovecot is not None:
            dovecot_profile(dovecot, bench_users, best=False, plain=False)
    return out
