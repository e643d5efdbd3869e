"""Addresses and envelope paths: the ONE place that parses and splits them.

Two parsers, for two jobs, and the splitters everything else calls:
- ``parse_smtp_path``: strict RFC 5321 grammar for the path of MAIL FROM / RCPT TO as it
  comes off the wire (smtp/params.py maps its errors to replies); strict on purpose,
  because addresses that mean different things to different parsers are how relay checks
  get bypassed.
- ``parse_path``: sendmail's laxer reading, for what admins write (virtusertable targets,
  ``daisymail resolve``, admin commands).
- ``split_address``, ``domain_of``, ``normalize_domain``: for addresses that one of the
  parsers (or the queue) already accepted.

Both parsers accept one trailing dot on a domain (``bob@example.test.``, the root label,
which sendmail's canonify stripped) and drop it, so routing, relay checks and the queue
only ever see ``example.test``; ``example.test..`` is still a syntax error.

Decisions of the lax parser (where the RFC leaves room or sendmail was lax):
- Angle brackets may be left off entirely (``MAIL FROM:user@dom``), as sendmail and
  Postfix (without strict_rfc821_envelopes) accept; half a pair is a syntax error.
- Dots in an unquoted local part are not checked for placement (``first..last``): sendmail
  delivered those and some senders still use them.
- Quoted local parts are kept as written, quotes and backslashes included, because that is
  the string sendmail looked up in its maps.
- Source routes (``<@a,@b:u@d>``) are checked for syntax and dropped (RFC 5321 §3.6.1).
- An address without ``@`` is unqualified (domain ""), e.g. ``<postmaster>``.

Replies: 501 5.1.3 for syntax (and "Path too long", as RFC 5321 §4.5.3.1.10 words it),
553 5.1.3 for a local part over 64 octets, 553 5.6.7 for a non-ASCII address without
SMTPUTF8 (RFC 6531). The 256-octet path limit also keeps every domain within 255 octets.
"""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass

MAX_LOCAL = 64
MAX_PATH = 256
MAX_LABEL = 63

_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
# Letters, digits, hyphen; underscore too, as resolvers and sendmail accept it.
_LDH = frozenset(string.ascii_letters + string.digits + "-_")


class AddressError(ValueError):
    """A path that cannot be accepted, with the SMTP reply that says why."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text


@dataclass(frozen=True)
class Address:
    """local as written (case kept); domain lowercased without a trailing dot, "" when
    unqualified."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local


def parse_path(arg: str, *, smtputf8: bool = False) -> Address | None:
    """Parse a MAIL FROM / RCPT TO path; None for the null path ``<>``."""
    text = arg.strip(" \t")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise _syntax("Control characters (CR, LF, NUL...) are not allowed in an address")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise AddressError(501, "5.1.3", "Path too long")
    if not text:
        raise _syntax("Empty address")
    if not smtputf8 and not text.isascii():
        raise AddressError(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
    if text.startswith("<") != text.endswith(">"):
        raise _syntax("Unbalanced '<' or '>' in address")
    if text.startswith("<"):
        text = text[1:-1]
        if not text:
            return None
    if text.startswith("@"):
        text = _strip_source_route(text)
    local, domain = _split(text)
    _check_local(local)
    if domain is None:
        return Address(local, "")
    return Address(local, _check_domain(domain))


def split_address(address: str) -> Address:
    """Split an accepted ``local@domain`` at its last ``@``; no ``@``: unqualified.

    The local part may itself hold ``@`` (quoted), the domain never does. The domain is
    normalized (``normalize_domain``)."""
    local, at, domain = address.rpartition("@")
    if not at:
        return Address(local=address, domain="")
    return Address(local=local, domain=normalize_domain(domain))


def domain_of(address: str) -> str:
    """The normalized domain of an accepted address ("" when unqualified)."""
    return split_address(address).domain


def normalize_domain(domain: str) -> str:
    """Domains compare lowercased and without the root's trailing dot."""
    return domain.strip().lower().rstrip(".")


def split_detail(local: str) -> tuple[str, str | None]:
    """Split ``user+detail`` at the first ``+``; a quoted local part is never split."""
    if local.startswith('"'):
        return local, None
    user, plus, detail = local.partition("+")
    return (user, detail) if plus else (local, None)


def _syntax(text: str) -> AddressError:
    return AddressError(501, "5.1.3", text)


def _strip_source_route(text: str) -> str:
    route, colon, rest = text.partition(":")
    if not colon:
        raise _syntax("Source route without ':'")
    for hop in route.split(","):
        if not hop.startswith("@"):
            raise _syntax("Bad source route")
        _check_domain(hop[1:])
    return rest


def _split(text: str) -> tuple[str, str | None]:
    """Split at the ``@`` after the local part; a quoted local part may contain ``@``."""
    if text.startswith('"'):
        end = _quoted_end(text)
        local, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith("@"):
            raise _syntax("Text after a quoted local part")
        return local, (rest[1:] if rest else None)
    local, at, domain = text.partition("@")
    return local, (domain if at else None)


def _quoted_end(text: str) -> int:
    """Index of the closing quote of the quoted string starting at text[0]."""
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise _syntax("Unterminated quoted local part")


def _check_local(local: str) -> None:
    if not local:
        raise _syntax("Empty local part")
    if len(local.encode("utf-8", "surrogatepass")) > MAX_LOCAL:
        raise AddressError(553, "5.1.3", f"Local part longer than {MAX_LOCAL} octets")
    if local.startswith('"'):
        return  # _quoted_end accepted it; controls were refused earlier
    bad = [ch for ch in local if ch != "." and ch not in _ATEXT and ch.isascii()]
    if bad:
        raise _syntax(f"Character {bad[0]!r} not allowed in an unquoted local part")


def _check_domain(domain: str) -> str:
    if domain.endswith(".") and not domain.startswith("["):
        domain = domain[:-1]
    if not domain:
        raise _syntax("Empty domain")
    if domain.startswith("["):
        return _check_literal(domain)
    for label in domain.split("."):
        if not label:
            raise _syntax("Empty label in domain")
        if len(label.encode("utf-8", "surrogatepass")) > MAX_LABEL:
            raise _syntax(f"Domain label longer than {MAX_LABEL} octets")
        if any(ch not in _LDH and ch.isascii() for ch in label):
            raise _syntax(f"Bad domain name {domain!r}")
    return domain.lower()


def _check_literal(domain: str) -> str:
    if not domain.endswith("]"):
        raise _syntax("Unterminated address literal")
    body = domain[1:-1]
    try:
        if body[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(body[5:])
        else:
            ipaddress.IPv4Address(body)
    except ValueError:
        raise _syntax(f"Bad address literal {domain!r}") from None
    return domain.lower()


# -- the wire: strict RFC 5321 paths (RFC 6531 with SMTPUTF8) ---------------------------

_ATEXT_RE = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_DOT_STRING_ASCII = re.compile(rf"[{_ATEXT_RE}]+(?:\.[{_ATEXT_RE}]+)*")
_DOT_STRING_UTF8 = re.compile(
    rf"[{_ATEXT_RE}\u0080-\U0010ffff]+(?:\.[{_ATEXT_RE}\u0080-\U0010ffff]+)*"
)
_QUOTED_ASCII = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_QUOTED_UTF8 = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LABEL_ASCII = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_LABEL_UTF8 = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*"
                         r"[A-Za-z0-9\u0080-\U0010ffff])?")  # fmt: skip
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def parse_smtp_path(text: str, *, utf8: bool, null_ok: bool, postmaster_ok: bool) -> str:
    """The mailbox inside ``<...>`` as ``local@domain``, source route and a trailing dot on
    the domain dropped; "" for ``<>``.

    Raises ValueError for bad syntax and UnicodeError for non-ASCII without SMTPUTF8.
    """
    if len(text.encode("utf-8")) + 2 > MAX_PATH:
        raise ValueError("path too long")
    if not text:
        if null_ok:
            return ""
        raise ValueError("empty path")
    if not utf8 and not text.isascii():
        raise UnicodeError("non-ASCII address")
    if text.startswith("@"):
        route, colon, text = text.partition(":")
        if not colon or not all(
            hop.startswith("@") and valid_smtp_domain(hop[1:], utf8=utf8)
            for hop in route.split(",")
        ):
            raise ValueError("bad source route")
    if postmaster_ok and text.lower() == "postmaster":
        return text
    if text.startswith('"'):
        match = (_QUOTED_UTF8 if utf8 else _QUOTED_ASCII).match(text)
    else:
        match = (_DOT_STRING_UTF8 if utf8 else _DOT_STRING_ASCII).match(text)
    if match is None or text[match.end() : match.end() + 1] != "@":
        raise ValueError("bad local part")
    local, domain = match.group(), text[match.end() + 1 :]
    if not valid_smtp_domain(domain, utf8=utf8):
        raise ValueError("bad domain")
    return f"{local}@{_drop_root_dot(domain)}"


def valid_smtp_domain(domain: str, *, utf8: bool) -> bool:
    """A domain or address literal as RFC 5321 writes it; one trailing dot (the root)
    allowed on a name, never on a literal, never two."""
    if domain.startswith("[") and domain.endswith("]"):
        return _valid_literal(domain[1:-1])
    domain = _drop_root_dot(domain)
    if not domain or len(domain.encode("utf-8")) > 255:
        return False
    label = _LABEL_UTF8 if utf8 else _LABEL_ASCII
    return all(
        label.fullmatch(part) and len(part.encode("utf-8")) <= MAX_LABEL
        for part in domain.split(".")
    )


def _drop_root_dot(domain: str) -> str:
    return domain[:-1] if domain.endswith(".") and not domain.startswith("[") else domain


def _valid_literal(literal: str) -> bool:
    if _IPV4.fullmatch(literal):
        return all(int(octet) <= 255 for octet in literal.split("."))
    if literal[:5].upper() == "IPV6:":
        try:
            ipaddress.IPv6Address(literal[5:])
        except ValueError:
            return False
        return True
    return bool(_GENERAL_LITERAL.fullmatch(literal))
