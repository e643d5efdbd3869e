"""DKIM keys per domain and selector under the data dir.

Layout: ``DIR/DOMAIN/SELECTOR.{rsa,ed25519}.pem`` (mode 600, PKCS#8) and
``SELECTOR.json`` with when the key was made and from when it signs (``not_before``).
For each algorithm the newest key whose ``not_before`` has passed signs; older ones are
retired by that, which is how rotation works: the new key is made now but starts
signing only after a delay, giving time to publish its DNS record first.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from daisymail.mailauth.dkim import PrivateKey, SigningKey, public_key_record

ALGORITHMS = ("rsa", "ed25519")
RSA_BITS = 2048
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")
_SELECTOR = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SETTLED = 2.0
"""Seconds after which a key folder's modification time is trusted to show a change."""


class KeyStoreError(Exception):
    """A bad domain or selector, a key that exists already, an unreadable key."""


@dataclass(frozen=True)
class KeyInfo:
    domain: str
    selector: str
    algorithm: str
    created: float
    not_before: float
    state: str  # "active", "pending" (signs from not_before) or "retired"
    record: str  # the DNS TXT record value


def check_name(domain: str, selector: str | None = None) -> str:
    d = domain.lower().rstrip(".")
    if not _DOMAIN.match(d):
        raise KeyStoreError(f"not a domain name: {domain!r}")
    if selector is not None and not _SELECTOR.match(selector):
        raise KeyStoreError(f"not a selector (letters, digits, hyphens): {selector!r}")
    return d


class KeyStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._loaded: dict[Path, tuple[float, PrivateKey]] = {}
        self._listed: dict[str, tuple[int, list[tuple[str, str, float, float, Path]]]] = {}
        self._empty: tuple[int, bool] | None = None

    def _pem(self, domain: str, selector: str, algorithm: str) -> Path:
        return self.root / domain / f"{selector}.{algorithm}.pem"

    def generate(
        self, domain: str, selector: str, algorithm: str, not_before: float | None = None
    ) -> KeyInfo:
        """A new key; it signs from ``not_before`` (now when None)."""
        domain = check_name(domain, selector)
        if algorithm not in ALGORITHMS:
            raise KeyStoreError(f"unknown algorithm {algorithm!r} (rsa or ed25519)")
        folder = self.root / domain
        if any(folder.glob(f"{selector}.*.pem")):
            raise KeyStoreError(f"selector {selector} of {domain} exists already")
        private: PrivateKey = (
            rsa.generate_private_key(65537, RSA_BITS)
            if algorithm == "rsa"
            else ed25519.Ed25519PrivateKey.generate()
        )
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = time.time()
        meta = {"created": now, "not_before": now if not_before is None else not_before}
        pem_path, meta_path = self._pem(domain, selector, algorithm), folder / f"{selector}.json"
        _write_private(pem_path, pem)
        _write_private(meta_path, json.dumps(meta).encode())
        self._give_to_data_owner(self.root, folder, pem_path, meta_path)
        return next(k for k in self.keys(domain) if k.selector == selector)

    def empty(self) -> bool:
        """No domain has a key folder: nothing to sign (one directory read, stopped at
        the first folder, whatever the number of domains).

        Asked for every outgoing message, so the answer is kept while the store's
        folder is unchanged (adding or removing a domain's folder changes it), as in
        ``_raw``."""
        try:
            st = os.stat(self.root)
            if self._empty is not None and self._empty[0] == st.st_mtime_ns:
                return self._empty[1]
            with os.scandir(self.root) as entries:
                empty = not any(e.is_dir() for e in entries)
        except OSError:
            return True
        if time.time() - st.st_mtime > SETTLED:
            self._empty = (st.st_mtime_ns, empty)
        return empty

    def domains(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def keys(self, domain: str | None = None, now: float | None = None) -> list[KeyInfo]:
        """Every key with its state and DNS record, by domain then creation."""
        now = time.time() if now is None else now
        out = [
            KeyInfo(d, sel, alg, created, nb, state, public_key_record(self._load(pem)))
            for d in ([check_name(domain)] if domain else self.domains())
            for sel, alg, created, nb, state, pem in self._entries(d, now)
        ]
        return sorted(out, key=lambda k: (k.domain, k.created, k.algorithm))

    def _raw(self, d: str) -> list[tuple[str, str, float, float, Path]]:
        """(selector, algorithm, created, not_before, pem path) of a domain's keys.

        Kept while the domain's folder is unchanged: every key and metadata file is
        written under a temporary name and renamed, which changes the folder. A folder
        changed in the last seconds is read again each time, since two changes within
        one tick of the file system's clock leave the same time behind."""
        folder = self.root / d
        try:
            st = folder.stat()
        except OSError:
            return []
        hit = self._listed.get(d)
        if hit is not None and hit[0] == st.st_mtime_ns:
            return hit[1]
        raw: list[tuple[str, str, float, float, Path]] = []
        for pem in sorted(folder.glob("*.pem")):
            selector, _, algorithm = pem.name.removesuffix(".pem").rpartition(".")
            if algorithm in ALGORITHMS:
                raw.append((selector, algorithm, *self._meta(pem, selector), pem))
        if time.time() - st.st_mtime > SETTLED:
            self._listed[d] = (st.st_mtime_ns, raw)
        return raw

    def _entries(self, d: str, now: float) -> list[tuple[str, str, float, float, str, Path]]:
        """(selector, algorithm, created, not_before, state, pem path) of a domain."""
        raw = self._raw(d)
        out = []
        for alg in ALGORITHMS:
            mine = sorted((r for r in raw if r[1] == alg), key=lambda r: (r[3], r[2]))
            started = [r for r in mine if r[3] <= now]
            for r in mine:
                state = "pending" if r[3] > now else "active" if r is started[-1] else "retired"
                out.append((r[0], r[1], r[2], r[3], state, r[4]))
        return out

    def signing_keys(self, domain: str, now: float | None = None) -> list[SigningKey]:
        """The active key of each algorithm; [] when the domain has none (or is invalid)."""
        try:
            d = check_name(domain)
        except KeyStoreError:
            return []
        now = time.time() if now is None else now
        return [
            SigningKey(d, sel, alg, self._load(pem))
            for sel, alg, _c, _nb, state, pem in self._entries(d, now)
            if state == "active"
        ]

    def rotate(self, domain: str, delay: float, now: float | None = None) -> list[KeyInfo]:
        """A new key for each algorithm the domain uses, signing after ``delay`` seconds."""
        now = time.time() if now is None else now
        current = self.keys(domain, now)
        if not current:
            raise KeyStoreError(f"{domain} has no DKIM key yet: use `dkim keygen`")
        algorithms = sorted({k.algorithm for k in current})
        base = default_selector(now)
        taken = {k.selector for k in current}
        made = []
        for alg in algorithms:
            selector = unique_selector(f"{base}{alg[0]}", taken)
            taken.add(selector)
            made.append(self.generate(domain, selector, alg, not_before=now + delay))
        return made

    def _give_to_data_owner(self, *paths: Path) -> None:
        """Run as root, the keys must still be readable by the server's own user: the
        owner of the data dir."""
        if os.geteuid() != 0:
            return
        st = self.root.parent.stat()
        for p in paths:
            os.chown(p, st.st_uid, st.st_gid)

    def _meta(self, pem: Path, selector: str) -> tuple[float, float]:
        try:
            meta = json.loads(pem.with_name(f"{selector}.json").read_text())
            return float(meta["created"]), float(meta["not_before"])
        except (OSError, ValueError, KeyError, TypeError):
            try:
                mtime = pem.stat().st_mtime
            except OSError:
                mtime = 0.0
            return mtime, mtime  # no usable metadata: signing since the key was made

    def _load(self, pem: Path) -> PrivateKey:
        try:
            mtime = pem.stat().st_mtime
            hit = self._loaded.get(pem)
            if hit is not None and hit[0] == mtime:
                return hit[1]
            key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        except (OSError, ValueError) as e:
            raise KeyStoreError(f"cannot read DKIM key {pem}: {e}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise KeyStoreError(f"{pem}: not an RSA or Ed25519 key")
        self._loaded[pem] = (mtime, key)
        return key


def default_selector(now: float | None = None) -> str:
    return time.strftime("d%Y%m%d", time.gmtime(time.time() if now is None else now))


def unique_selector(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def _write_private(path: Path, data: bytes) -> None:
    """Written under a temporary name with mode 600, then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
