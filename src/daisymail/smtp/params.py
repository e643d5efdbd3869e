"""MAIL FROM / RCPT TO arguments: paths (RFC 5321 4.1.2) and ESMTP parameters.

Strict on purpose: anything the grammar does not allow is refused with the reply the RFCs
name, because addresses that mean different things to different parsers are how relay
checks get bypassed. One allowance for real clients: spaces after `FROM:` / `TO:`. The path
grammar itself lives in routing/addresses.py (``parse_smtp_path``), the one address module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from daisymail.routing.addresses import parse_smtp_path as parse_path

from .replies import MESSAGE_TOO_BIG, Reply, reply

MAX_ENVID = 100
MAX_ORCPT = 500

_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[^\x00-\x20=\x7f]+")
_ATOM = re.compile(rf"[{_ATEXT}]+")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*")
_XTEXT_UTF8 = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e\u0080-\U0010ffff]|\+[0-9A-Fa-f]{2})*")
_XTEXT_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})

# Which EHLO keyword makes each parameter legal.
MAIL_PARAMS = {
    "SIZE": "SIZE",
    "BODY": "8BITMIME",
    "SMTPUTF8": "SMTPUTF8",
    "RET": "DSN",
    "ENVID": "DSN",
    "AUTH": "AUTH",
}
RCPT_PARAMS = {"NOTIFY": "DSN", "ORCPT": "DSN"}


class CommandError(Exception):
    """A command argument was refused; `reply` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.lines[0] if reply.lines else "")
        self.reply = reply


@dataclass(frozen=True)
class MailArgs:
    sender: str
    params: dict[str, str]
    body_type: str
    smtputf8: bool
    declared_size: int | None


@dataclass(frozen=True)
class RcptArgs:
    address: str
    params: dict[str, str]


def _param_error(text: str) -> CommandError:
    return CommandError(reply(501, "5.5.4", text))


def xtext_decode(value: str, *, utf8: bool = False) -> str:
    """RFC 3461 section 4: `+XX` escapes; RFC 6533 lets SMTPUTF8 sessions send UTF-8 as is.

    Control characters are refused even when escaped: the values end up in spool files
    and bounce messages.
    """
    if not (_XTEXT_UTF8 if utf8 else _XTEXT).fullmatch(value):
        raise ValueError("invalid xtext")
    decoded = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in decoded):
        raise ValueError("xtext decodes to control characters")
    return decoded


def xtext_encode(value: str) -> str:
    """The inverse of xtext_decode, for passing DSN parameters on to the next hop."""
    return "".join(
        ch if 0x21 <= ord(ch) <= 0x7E and ch not in "+=" else f"+{ord(ch):02X}" for ch in value
    )


def split_path(arg: str, keyword: str) -> tuple[str, str]:
    """Split `FROM:<path> params` into the text inside the brackets and the rest."""
    if arg[: len(keyword)].upper() != keyword:
        raise CommandError(reply(501, "5.5.4", f"Syntax: {keyword}<address>"))
    rest = arg[len(keyword) :].lstrip(" ")
    if not rest.startswith("<"):
        raise CommandError(reply(501, "5.5.4", f"Syntax: {keyword}<address>"))
    quoted = escaped = False
    for index, ch in enumerate(rest):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            after = rest[index + 1 :]
            if after and not after.startswith(" "):
                break
            return rest[1:index], after.strip(" ")
    raise CommandError(reply(501, "5.5.4", f"Syntax: {keyword}<address>"))


def split_params(text: str) -> dict[str, str | None]:
    """`KEY=VALUE` / `KEY` words, keys upper-cased; duplicates are refused."""
    params: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(value)):
            raise _param_error(f"Bad parameter syntax: {word}")
        key = key.upper()
        if key in params:
            raise _param_error(f"Duplicate parameter: {key}")
        params[key] = value if eq else None
    return params


def _check_offered(
    params: dict[str, str | None], table: dict[str, str], offered: frozenset[str]
) -> None:
    for key in params:
        if table.get(key) not in offered:
            raise CommandError(reply(555, "5.5.4", f"Unsupported parameter: {key}"))


def _need_value(params: dict[str, str | None], key: str) -> str:
    value = params[key]
    if value is None:
        raise _param_error(f"{key} needs a value")
    return value


def _xtext(params: dict[str, str | None], key: str, limit: int) -> str:
    value = _need_value(params, key)
    if len(value) > limit:
        raise _param_error(f"{key} too long")
    try:
        return xtext_decode(value)
    except ValueError as exc:
        raise _param_error(f"Bad {key} value") from exc


def _address_error(command: str, exc: ValueError) -> CommandError:
    if isinstance(exc, UnicodeError):
        who = "sender" if command == "MAIL" else "recipient"
        return CommandError(reply(553, "5.6.7", f"Non-ASCII addresses not permitted for {who}"))
    if command == "MAIL":
        return CommandError(reply(501, "5.1.7", f"Bad sender address syntax ({exc})"))
    return CommandError(reply(501, "5.1.3", f"Bad recipient address syntax ({exc})"))


def parse_mail(arg: str, *, offered: frozenset[str], max_size: int) -> MailArgs:
    """Check a MAIL argument against the EHLO keywords `offered` in this session."""
    path, rest = split_path(arg, "FROM:")
    raw = split_params(rest)
    _check_offered(raw, MAIL_PARAMS, offered)
    params: dict[str, str] = {}
    declared: int | None = None
    if "SIZE" in raw:
        size = _need_value(raw, "SIZE")
        if not size.isdigit() or len(size) > 20:
            raise _param_error("SIZE must be a number")
        declared = int(size)
        if declared > max_size:
            raise CommandError(MESSAGE_TOO_BIG)
        params["SIZE"] = str(declared)
    body = "7BIT"
    if "BODY" in raw:
        body = _need_value(raw, "BODY").upper()
        if body not in ("7BIT", "8BITMIME"):
            raise CommandError(reply(555, "5.5.4", f"Unsupported BODY type: {body}"))
        params["BODY"] = body
    smtputf8 = "SMTPUTF8" in raw
    if smtputf8:
        if raw["SMTPUTF8"] is not None:
            raise _param_error("SMTPUTF8 takes no value")
        params["SMTPUTF8"] = ""
    if "RET" in raw:
        ret = _need_value(raw, "RET").upper()
        if ret not in ("FULL", "HDRS"):
            raise _param_error("RET must be FULL or HDRS")
        params["RET"] = ret
    if "ENVID" in raw:
        params["ENVID"] = _xtext(raw, "ENVID", MAX_ENVID)
    if "AUTH" in raw:
        params["AUTH"] = _xtext(raw, "AUTH", MAX_ORCPT)
    try:
        sender = parse_path(path, utf8=smtputf8, null_ok=True, postmaster_ok=False)
    except ValueError as exc:
        raise _address_error("MAIL", exc) from exc
    return MailArgs(sender, params, body, smtputf8, declared)


def parse_rcpt(arg: str, *, offered: frozenset[str], smtputf8: bool) -> RcptArgs:
    """Check a RCPT argument; `smtputf8` is whether MAIL carried the SMTPUTF8 parameter."""
    path, rest = split_path(arg, "TO:")
    raw = split_params(rest)
    _check_offered(raw, RCPT_PARAMS, offered)
    params: dict[str, str] = {}
    if "NOTIFY" in raw:
        words = _need_value(raw, "NOTIFY").upper().split(",")
        if words != ["NEVER"] and (not set(words) <= _NOTIFY or len(set(words)) != len(words)):
            raise _param_error("NOTIFY must be NEVER or SUCCESS, FAILURE, DELAY")
        params["NOTIFY"] = ",".join(words)
    if "ORCPT" in raw:
        value = _need_value(raw, "ORCPT")
        addr_type, semi, original = value.partition(";")
        if not semi or not _ATOM.fullmatch(addr_type) or len(value) > MAX_ORCPT:
            raise _param_error("Bad ORCPT value")
        try:
            decoded = xtext_decode(original, utf8=smtputf8)
        except ValueError as exc:
            raise _param_error("Bad ORCPT value") from exc
        params["ORCPT"] = f"{addr_type};{decoded}"
    try:
        address = parse_path(path, utf8=smtputf8, null_ok=False, postmaster_ok=True)
    except ValueError as exc:
        raise _address_error("RCPT", exc) from exc
    return RcptArgs(address, params)
