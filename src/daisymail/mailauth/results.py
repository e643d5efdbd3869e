"""The Authentication-Results header field (RFC 8601): build ours, drop forged ones.

One field per message carries every verdict under Daisy's authserv-id. A field with
that id that arrived with the message was not written by us, so it is removed before
ours is added (RFC 8601 5); fields of other servers stay.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from daisymail.mailauth.arc import ARCResult
from daisymail.mailauth.dkim_verify import DKIMResult
from daisymail.mailauth.dmarc import DMARCResult
from daisymail.mailauth.spf import SPFResult

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`{|}~@]+$")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_NOT_IN_COMMENT = re.compile(r"[()\\\r\n]")


def _value(v: str) -> str:
    """A pvalue as a token, or a quoted string when it has to be."""
    if _TOKEN.match(v) and not v.startswith("@"):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    clean = _NOT_IN_COMMENT.sub("", text)
    return f" ({clean})" if clean else ""


def spf_result(res: SPFResult, mailfrom: str, helo: str) -> str:
    """``spf=RESULT smtp.mailfrom=...`` (or smtp.helo when MAIL FROM was empty)."""
    prop = f"smtp.mailfrom={_value(mailfrom)}" if mailfrom else f"smtp.helo={_value(helo)}"
    return f"spf={res.result}{_comment(res.reason)} {prop}"


def dkim_result(res: DKIMResult) -> str:
    out = f"dkim={res.result}"
    if res.reason:
        out += f" reason={_value(res.reason)}"
    if res.domain:
        out += f" header.d={_value(res.domain)}"
    if res.selector:
        out += f" header.s={_value(res.selector)}"
    if res.algorithm:
        out += f" header.a={_value(res.algorithm)}"
    if res.b:
        out += f" header.b={_value(res.b)}"
    return out


def arc_result(res: ARCResult) -> str:
    detail = f"i={res.instances} d={res.domain}" if res.result == "pass" else res.reason
    return f"arc={res.result}{_comment(detail)}"


def dmarc_result(res: DMARCResult, override: str = "") -> str:
    """``dmarc=fail (p=reject dis=reject) header.from=...``; with ``override`` (the local
    policy that set the policy aside, RFC 7489 6.7) ``dis=none`` and a ``reason=``."""
    if override:
        detail = f"p={res.requested} dis=none"
        why = f" reason={_value(override)}"
    else:
        detail = f"p={res.requested} dis={res.policy}" if res.requested else res.reason
        why = ""
    return f"dmarc={res.result}{_comment(detail)}{why} header.from={_value(res.from_domain)}"


def authentication_results(
    authserv_id: str,
    *,
    spf: str | None = None,
    dkim: Sequence[DKIMResult] | None = None,
    dmarc: DMARCResult | None = None,
    dmarc_override: str = "",
    extra: Sequence[str] = (),
) -> bytes:
    """The whole field with CRLF; ``spf`` is spf_result()'s text. ``none`` when empty.

    ``dkim=[]`` (checked, no signature) gives ``dkim=none``; None leaves DKIM out.
    """
    parts: list[str] = []
    if spf is not None:
        parts.append(spf)
    if dkim is not None:
        parts.extend([dkim_result(r) for r in dkim] or ["dkim=none"])
    if dmarc is not None:
        parts.append(dmarc_result(dmarc, dmarc_override))
    parts.extend(extra)
    body = ";\r\n\t".join([authserv_id, *parts]) if parts else f"{authserv_id}; none"
    return f"Authentication-Results: {body}\r\n".encode()


def authserv_id_of(field: bytes) -> str:
    """The authserv-id of an Authentication-Results field (comments and version dropped)."""
    value = field.partition(b":")[2].decode("utf-8", "replace")
    value = _COMMENT.sub(" ", value)
    first = value.split(";", 1)[0].split()
    return first[0].lower() if first else ""


def claims_own(fields: Sequence[bytes], authserv_id: str) -> bool:
    """Does a header claim results of ours (an Authentication-Results field with our
    authserv-id, which only we may add)?"""
    return len(remove_own(fields, authserv_id)) != len(fields)


def remove_own(fields: Sequence[bytes], authserv_id: str) -> list[bytes]:
    """The header fields without Authentication-Results claiming our authserv-id."""
    me = authserv_id.lower()
    return [f for f in fields if not (_is_results(f) and authserv_id_of(f) == me)]


_RESULTS_NAME = b"authentication-results"


def _is_results(field: bytes) -> bool:
    """An Authentication-Results field? (Names too short to be one are ruled out
    before they are stripped and lowercased: most fields of every message.)"""
    name = field.partition(b":")[0]
    return len(name) >= len(_RESULTS_NAME) and name.strip().lower() == _RESULTS_NAME
