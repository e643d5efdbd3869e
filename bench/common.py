"""What Daisy and the peers share in a benchmark: the work folder, the users, their hashes.

Both sides get the very same argon2id hash strings (Daisy's own hash_password, so the
RFC 9106 low-memory profile: t=3, m=64 MiB, p=4); Dovecot verifies them through
libsodium as {ARGON2ID}. They are made once and kept in the work folder, because 100
hashes cost seconds of CPU.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

WORK = Path(os.environ.get("DAISY_BENCH_DIR", "/var/tmp/daisy-bench"))
REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("one.bench.test", "two.bench.test")
USERS_PER_DOMAIN = 50
MAIL_UID_NAME = "benchmail"  # owner of the peers' Maildirs (Postfix virtual, Dovecot)

POSTFIX_SMTP_PORT = 3525
DOVECOT_POP3_PORT = 3110
DAISY_SMTP_PORT = 4525
DAISY_POP3_PORT = 4110


@dataclass(frozen=True)
class User:
    local: str
    domain: str
    password: str
    password_hash: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def mailbox(self) -> str:
        """The Maildir folder name on both sides: Daisy's default mailbox name."""
        return f"{self.local}.{self.domain}"


def users(work: Path = WORK, per_domain: int = USERS_PER_DOMAIN) -> list[User]:
    """The bench users (per_domain in each domain), hashing each password once only."""
    cache = work / "users.json"
    known = {}
    if cache.exists():
        known = {(u["local"], u["domain"]): User(**u) for u in json.loads(cache.read_text())}
    made = []
    for n, dom in enumerate(DOMAINS):
        for i in range(per_domain):
            user = known.get((f"u{i:02d}", dom))
            if user is None:
                from daisymail.directory.passwords import hash_password

                password = f"bench-{i:02d}-{n}"
                user = User(f"u{i:02d}", dom, password, hash_password(password))
                known[(user.local, user.domain)] = user
            made.append(user)
    work.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps([u.__dict__ for u in known.values()], indent=1))
    tmp.replace(cache)
    return made


def switch_link(link: Path, target: Path) -> None:
    """Point link at target atomically (servers follow it on their next delivery)."""
    target.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(link)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody else in this run was given, outside the ephemeral range.

    Binding port 0 lets the kernel hand the same port out twice in a row, and a port from
    the ephemeral range can be taken by any client's outgoing connection before the server
    binds it; both made server starts fail now and then.
    """
    base = 20000 + (os.getpid() * 7919) % 10000
    for i in range(10000):
        port = 20000 + (base - 20000 + i) % 10000
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port in 20000-29999")
