"""Password hashing: known vectors for every legacy format, argon2id for new hashes."""

from __future__ import annotations

import time

import argon2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.hash import (
    apr_md5_crypt,
    bcrypt,
    des_crypt,
    ldap_sha1,
    md5_crypt,
    sha256_crypt,
    sha512_crypt,
)

from daisymail.directory import passwords
from daisymail.directory.passwords import (
    dummy_verify,
    hash_password,
    needs_rehash,
    plaintext_hash,
    plaintext_secret,
    verify_password,
)

# Fixed vectors made by independent implementations (OpenSSL `passwd`, glibc crypt(3),
# sha1sum | base64), all for the password "password".
FIXED = [
    "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/",
    "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/",
    "$5$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.",
    "$5$rounds=5000$saltsalt$gOjOtoMpVhru2uyjeJSEc/JaLQWOXMNmlOnj6T4AtC.",
    "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
    "abJnggxhB/yWI",
    "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
    "{PLAIN}password",
]


@pytest.mark.parametrize("stored", FIXED)
def test_fixed_vectors(stored: str) -> None:
    assert verify_password(stored, "password")
    assert not verify_password(stored, "Password")
    assert not verify_password(stored, "pass word")
    assert not verify_password(stored, "")
    assert needs_rehash(stored)


def test_htpasswd_lines_from_apache() -> None:
    # Lines as `htpasswd -s` and `htpasswd -m` write them; the hash is the part after ":".
    lines = ["john:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "mary:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/"]
    for line in lines:
        _, stored = line.split(":", 1)
        assert verify_password(stored, "password")
        assert not verify_password(stored, "passwort")


SECRETS = ["password", "Geheim!1", "ünïcødé-pässwörd", "with space", "x" * 64]


@pytest.mark.parametrize(
    "handler",
    [md5_crypt, apr_md5_crypt, sha256_crypt, sha512_crypt, ldap_sha1],
    ids=lambda h: h.name,
)
@pytest.mark.parametrize("secret", SECRETS)
def test_generated_crypt_vectors(handler: type, secret: str) -> None:
    # Low round counts keep the test fast; the rounds are part of the stored string.
    if handler in (sha256_crypt, sha512_crypt):
        handler = handler.using(rounds=5000)  # type: ignore[attr-defined]
    stored = handler.hash(secret)  # type: ignore[attr-defined]
    assert verify_password(stored, secret)
    assert not verify_password(stored, secret + "x")
    assert not verify_password(stored, secret.upper() if secret != secret.upper() else "y")


def test_des_crypt_uses_only_eight_characters() -> None:
    stored = des_crypt.using(salt="ab").hash("password")
    assert stored == "abJnggxhB/yWI"
    # crypt(3) DES ignores everything past the eighth character.
    assert verify_password(stored, "password-and-more")
    assert not verify_password(stored, "passwor")


def test_bcrypt_is_not_verified_without_its_backend() -> None:
    stored = "$2b$12$GhvMmNVjRW29ulnudl.LbuAnUtN/LRfe1JsBm1Xu6LE3059z5Tr8m"
    assert not bcrypt.has_backend()
    assert not verify_password(stored, "password")
    assert needs_rehash(stored)


def test_argon2id_round_trip_and_parameters() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, "s3cret")
    assert not verify_password(stored, "s3cret ")
    assert not needs_rehash(stored)
    assert hash_password("s3cret") != stored  # random salt


def test_libsodium_and_argon2_cffi_agree_on_current_hashes() -> None:
    """Current-profile hashes are checked by libsodium; the answers must not change."""
    from daisymail.directory import passwords

    assert passwords._sodium_verify is not None  # PyNaCl is a dependency
    stored = hash_password("s3cret")
    for plain in ("s3cret", "s3cret ", "", "sécret", "S3CRET"):
        try:
            expected = argon2.PasswordHasher().verify(stored, plain)
        except argon2.exceptions.VerifyMismatchError:
            expected = False
        assert passwords._sodium_verify(stored, plain) is expected
        assert verify_password(stored, plain) is expected
    last = stored[-1]
    tampered = stored[:-1] + ("A" if last != "A" else "B")
    assert not verify_password(tampered, "s3cret")


def test_argon2i_and_weaker_argon2id_verify_but_need_rehash() -> None:
    argon2i = argon2.PasswordHasher(type=argon2.Type.I).hash("pw")
    assert verify_password(argon2i, "pw")
    assert needs_rehash(argon2i)
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    assert verify_password(weak, "pw")
    assert needs_rehash(weak)


def test_argon2d_is_not_accepted() -> None:
    stored = argon2.PasswordHasher(type=argon2.Type.D).hash("pw")
    assert not verify_password(stored, "pw")


MALFORMED = [
    "",
    "$argon2id$",
    "$argon2id$v=19$m=65536,t=3,p=4$garbage",
    "$1$",
    "$1$saltsalt$short",
    "$5$rounds=abc$salt$hash",
    "$6$$",
    "$apr1$x",
    "{SHA}not-base64!",
    "{SHA}",
    "*",
    "!",
    "!!abJnggxhB/yWI",
    "abJnggxhB/yW",
    "plain-password",
    "{PLAIN",
    "\x00\x01",
]


@pytest.mark.parametrize("stored", MALFORMED)
def test_malformed_stored_values_never_match_or_raise(stored: str) -> None:
    assert not verify_password(stored, "password")
    assert not verify_password(stored, "")
    assert needs_rehash(stored)


@settings(max_examples=200, deadline=None)
@given(stored=st.text(max_size=80), plain=st.text(max_size=20))
def test_verify_never_raises(stored: str, plain: str) -> None:
    assert isinstance(verify_password(stored, plain), bool)
    assert isinstance(needs_rehash(stored), bool)


def test_unencodable_plain_is_a_mismatch() -> None:
    assert not verify_password("{PLAIN}a", "\udcff")


def test_plaintext_secret_only_for_plain_entries() -> None:
    assert plaintext_hash("j04n4CmE") == "{PLAIN}j04n4CmE"
    assert plaintext_secret("{PLAIN}j04n4CmE") == "j04n4CmE"
    assert plaintext_secret("{PLAIN}") == ""
    assert plaintext_secret("{plain}x") is None
    assert plaintext_secret("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=") is None
    assert plaintext_secret(hash_password("x")) is None
    assert verify_password("{PLAIN}", "")


@settings(max_examples=50, deadline=None)
@given(secret=st.text(max_size=30))
def test_plain_entries_verify_exactly(secret: str) -> None:
    stored = plaintext_hash(secret)
    assert plaintext_secret(stored) == secret
    assert verify_password(stored, secret)
    assert not verify_password(stored, secret + "!")


@pytest.mark.serial
def test_dummy_verify_costs_as_much_as_a_real_verify() -> None:
    stored = hash_password("right")
    dummy_verify("warm-up")

    def timed(fn: object) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            best = min(best, time.perf_counter() - start)
        return best

    real = timed(lambda: verify_password(stored, "wrong"))
    dummy = timed(lambda: dummy_verify("wrong"))
    assert 0.5 < dummy / real < 2.0


def test_dummy_hash_uses_current_parameters() -> None:
    assert not needs_rehash(passwords._dummy_hash())
