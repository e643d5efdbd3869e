"""Password hashing: argon2id for everything new, legacy formats verified so imports keep working.

New hashes use argon2-cffi's defaults, the RFC 9106 "low memory" profile (argon2id, t=3,
m=64 MiB, p=4): about 0.1 s of CPU and 64 MiB of memory per verify, paid on every login,
so concurrent logins are bounded by memory as much as by CPU.

Legacy formats come from teapop textfile/htpasswd files and sendmail-era crypt(3) hashes:
MD5-crypt ``$1$``, Apache ``$apr1$``, SHA-crypt ``$5$``/``$6$``, 13-character DES crypt,
htpasswd ``{SHA}`` and ``{PLAIN}`` (cleartext, only kept when an admin wants APOP). bcrypt
(``$2a$``/``$2b$``/``$2y$``) is not verified: libpass needs the extra ``bcrypt`` package for it.
Everything that is not current argon2id reports needs_rehash, so it is upgraded at the next
good login.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from functools import cache

import argon2
from passlib.hash import (
    apr_md5_crypt,
    des_crypt,
    ldap_sha1,
    md5_crypt,
    sha256_crypt,
    sha512_crypt,
)

PLAIN_PREFIX = "{PLAIN}"

_hasher = argon2.PasswordHasher()


def _load_sodium() -> Callable[[str, str], bool] | None:
    """argon2id verification through libsodium (PyNaCl), when it is installed.

    The computation and the result are the same as argon2-cffi's, but libsodium picks
    a SIMD implementation at run time: over twice the verifications per second on the
    same cores, which is what bounds the login rate. libsodium compares in constant
    time and answers every mismatch or malformed hash alike. It is used only for hashes
    with the current parameters (what hash_password makes and rehashing converges to);
    anything else goes to argon2-cffi, which accepts every valid parameter set."""
    try:
        from nacl.exceptions import InvalidkeyError
        from nacl.pwhash import argon2id
    except ImportError:
        return None

    def verify(stored: str, plain: str) -> bool:
        try:
            return bool(argon2id.verify(stored.encode("ascii"), plain.encode("utf-8")))
        except InvalidkeyError:
            return False

    return verify


_sodium_verify = _load_sodium()


_CURRENT_PREFIX = (
    f"$argon2id$v={argon2.low_level.ARGON2_VERSION}"
    f"$m={_hasher.memory_cost},t={_hasher.time_cost},p={_hasher.parallelism}$"
)
"""``$argon2id$v=19$m=65536,t=3,p=4$``: how every fresh hash_password() result begins."""


# Checked in order; each prefix belongs to one handler, DES crypt (no prefix) comes last.
_LEGACY = (
    ("$1$", md5_crypt),
    ("$apr1$", apr_md5_crypt),
    ("$5$", sha256_crypt),
    ("$6$", sha512_crypt),
    ("{SHA}", ldap_sha1),
)


def hash_password(plain: str) -> str:
    """A fresh ``$argon2id$`` hash with a random salt."""
    return _hasher.hash(plain)


def plaintext_hash(plain: str) -> str:
    """The stored form of a cleartext secret, for accounts that must keep APOP working."""
    return PLAIN_PREFIX + plain


def verify_password(stored: str, plain: str) -> bool:
    """Does plain match the stored hash? False for unknown or malformed stored values."""
    try:
        return _verify(stored, plain)
    except Exception:
        return False


def _verify(stored: str, plain: str) -> bool:
    if _sodium_verify is not None and stored.startswith(_CURRENT_PREFIX):
        return _sodium_verify(stored, plain)
    if stored.startswith(("$argon2id$", "$argon2i$")):
        try:
            return _hasher.verify(stored, plain)
        except argon2.exceptions.VerifyMismatchError:
            return False
    if stored.startswith(PLAIN_PREFIX):
        return hmac.compare_digest(stored[len(PLAIN_PREFIX) :].encode(), plain.encode())
    for prefix, handler in _LEGACY:
        if stored.startswith(prefix):
            return bool(handler.verify(plain, stored))
    if des_crypt.identify(stored):
        return bool(des_crypt.verify(plain, stored))
    return False


def needs_rehash(stored: str) -> bool:
    """True unless stored is argon2id with the parameters hash_password uses now."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _hasher.check_needs_rehash(stored)
    except Exception:
        return True


def plaintext_secret(stored: str) -> str | None:
    """The cleartext secret APOP needs; only ``{PLAIN}`` entries have one."""
    if stored.startswith(PLAIN_PREFIX):
        return stored[len(PLAIN_PREFIX) :]
    return None


# A fixed hash of a random, forgotten password: made in advance, because making it at
# the first unknown-user login cost that login a second (hash + verify), which was both
# a tell and a flaky test. Nobody can log in with it: unknown users always fail.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$IA3DfkWhocIuRP48OgJkpw"
    "$iW6rk97fmY+qNfgAWK1mN2ForR5x7MZbO3evSxaYm60"
)


@cache
def _dummy_hash() -> str:
    """The dummy hash, with the parameters (and so the cost) of current hashes."""
    if _DUMMY_HASH.startswith(_CURRENT_PREFIX):
        return _DUMMY_HASH
    return _hasher.hash(secrets.token_urlsafe(16))  # parameters changed: make a matching one


def dummy_verify(plain: str) -> None:
    """Spend what a real argon2 verify costs, so an unknown user looks like a wrong password."""
    verify_password(_dummy_hash(), plain)
