"""Where does mail for a recipient go? sendmail's virtusertable semantics (§2.4, §2.5, §2.8).

Lookup keys are lowercased; ``%1 %2 %3`` keep the case of the address as written and
``%0`` is the key looked up. A right-hand side is an ``error:`` reply, a bare mailbox name
(``name+detail`` allowed), or an address: in a hosted domain it is resolved again (chains,
at most 50 hops, as sendmail's rewrite recursion limit), elsewhere it is forwarded.

Daisy's own decisions, where sendmail's behaviour was a trap:
- a local part with ``%`` or ``!`` (outside quotes) is refused with 550 5.7.1 before any
  lookup, so the %-hack and UUCP paths never reach a catch-all or a relay;
- an ``error:`` entry whose text has no code but whose D.S.N is given gets 450 or 550 from
  the D.S.N class (sendmail documented neither); ``error:550 text`` (a code where the tag
  goes) means code 550;
- a target that is not a valid address gets 451 4.3.5, a local configuration error the
  sender may retry once the table is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from daisymail.directory.model import Domain, Snapshot
from daisymail.routing.addresses import Address, AddressError, parse_path, split_detail
from daisymail.routing.substitution import substitute

MAX_HOPS = 50
LOOP_TEXT = f"rewrite: excessive recursion (max {MAX_HOPS}), ruleset canonify"

_DSN_PREFIX = re.compile(r"([245]\.\d{1,3}\.\d{1,3}):")
_CODE = re.compile(r"[245]\d\d")
_CODE_PREFIX = re.compile(r"([245]\d\d)(?:[ \t]+|$)")
_ENHANCED_PREFIX = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?:[ \t]+|$)")


@dataclass(frozen=True)
class Deliver:
    """Into a local mailbox; detail is the ``+detail`` ("" for ``name+``), None without."""

    mailbox: str
    detail: str | None


@dataclass(frozen=True)
class Forward:
    """To an address outside the hosted domains, accepted because the original was local."""

    address: str


@dataclass(frozen=True)
class Reject:
    code: int
    enhanced: str
    text: str

    @property
    def temporary(self) -> bool:
        return self.code // 100 == 4

    def reply(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


@dataclass(frozen=True)
class Remote:
    """The domain is not hosted here; whether to relay is the caller's decision."""

    address: str


Decision = Deliver | Forward | Reject | Remote


@dataclass(frozen=True)
class Resolution:
    """decision for the address; rule is the table key that matched the address itself
    (later hops of a chain are in steps); steps explain every lookup for an admin."""

    decision: Decision
    rule: str | None
    steps: tuple[str, ...]


# An SRS address of ours to the original one it stands for; None when forged or expired.
SRSReverse = Callable[[str], str | None]


def resolve_recipient(
    address: Address, snapshot: Snapshot, srs: SRSReverse | None = None
) -> Resolution:
    """srs: given when SRS is on ([srs] secret); a bounce to an SRS address in a hosted
    domain then goes back to the original sender, and a forged one is unknown."""
    return _Resolver(address, snapshot, srs).run()


def _is_srs(local: str) -> bool:
    return local[:5].upper() in ("SRS0=", "SRS1=")


class _Resolver:
    def __init__(self, original: Address, snapshot: Snapshot, srs: SRSReverse | None) -> None:
        self.original = original
        self.snapshot = snapshot
        self.srs = srs
        self.steps: list[str] = []
        self.rule: str | None = None

    def run(self) -> Resolution:
        decision = self.resolve()
        return Resolution(decision, self.rule, tuple(self.steps))

    def resolve(self) -> Decision:
        current = self.original
        seen = {str(current)}
        while True:
            domain = self.snapshot.domains.get(current.domain) if current.domain else None
            if current.domain and domain is None:
                self.steps.append(f"{current.domain} is not a hosted domain: remote address")
                return Remote(str(current))
            if _has_route_characters(current.local):
                self.steps.append(f"{current.local!r} contains '%' or '!': a relay path, refused")
                return self.reject(550, "5.7.1", "Relaying denied")
            if domain is None:
                self.steps.append(f"{current} is unqualified: a local mailbox name")
                return self.local(current.local)
            mode = "legacy fallback" if domain.fallback else "strict"
            self.steps.append(f"resolving {current} in hosted domain {domain.name} ({mode})")
            if self.srs is not None and _is_srs(current.local):
                outcome = self.srs_bounce(current)
            else:
                outcome = self.lookup(current, domain)
            if not isinstance(outcome, Address):
                return outcome
            if str(outcome) in seen or len(seen) > MAX_HOPS:
                self.steps.append(f"{outcome} was reached before or the chain is too long: loop")
                return Reject(554, "5.0.0", LOOP_TEXT)
            seen.add(str(outcome))
            current = outcome

    def srs_bounce(self, address: Address) -> Decision | Address:
        """A bounce to an address our forwarding made: back to the original sender."""
        assert self.srs is not None
        original = self.srs(str(address))
        if original is None:
            self.steps.append(f"{address} is not a valid SRS address of ours (forged or old)")
            return self.reject(550, "5.1.1", "User unknown (invalid SRS address)")
        self.steps.append(f"SRS address of ours: the original sender is {original}")
        try:
            parsed = parse_path(original, smtputf8=True)
        except AddressError:
            parsed = None
        if parsed is None or not parsed.domain:
            return self.reject(550, "5.1.1", "User unknown (invalid SRS address)")
        if parsed.domain in self.snapshot.domains:
            return parsed
        return Forward(str(parsed))

    def lookup(self, address: Address, domain: Domain) -> Decision | Address:
        for key, params in _candidates(address):
            value = self.snapshot.address_rules.get(key)
            if value is None:
                self.steps.append(f"lookup {key}: no entry")
                continue
            self.steps.append(f"lookup {key}: found {value!r}")
            if self.rule is None:
                self.rule = key
            target = substitute(value, key, params).strip(" \t\r\n")
            if target != value:
                self.steps.append(f"substituted {_describe(params)}: {target!r}")
            return self.target(target)
        if domain.fallback:
            self.steps.append(
                f"no entry matched; {domain.name} follows the legacy rule: "
                "every mailbox name is an address in every hosted domain"
            )
            return self.local(address.local)
        self.steps.append(f"no entry matched; {domain.name} is strict: only listed addresses")
        return self.unknown()

    def target(self, target: str) -> Decision | Address:
        if target[:6].lower() == "error:":
            code, enhanced, text = _error_reply(target[6:])
            self.steps.append(f"error entry: {code} {enhanced} {text}")
            return self.reject(code, enhanced, text)
        try:
            parsed = parse_path(target, smtputf8=True) if target else None
        except AddressError as exc:
            self.steps.append(f"target {target!r} is not an address: {exc.text}")
            parsed = None
        if parsed is None:
            self.steps.append(f"target {target!r} cannot be used")
            return self.reject(451, "4.3.5", "Local configuration error")
        if not parsed.domain:
            return self.local(parsed.local)
        if parsed.domain in self.snapshot.domains:
            return parsed
        self.steps.append(f"{parsed} is not in a hosted domain: forward")
        return Forward(str(parsed))

    def local(self, name: str) -> Decision:
        user, detail = split_detail(name)
        if not user:
            user, detail = name, None
        mailbox = user.lower()
        if mailbox in self.snapshot.mailboxes:
            shown = "" if detail is None else f" with detail {detail!r}"
            self.steps.append(f"deliver to mailbox {mailbox}{shown}")
            return Deliver(mailbox, detail)
        self.steps.append(f"there is no mailbox {mailbox}")
        return self.unknown()

    def unknown(self) -> Reject:
        return self.reject(550, "5.1.1", "User unknown")

    def reject(self, code: int, enhanced: str, text: str) -> Reject:
        return Reject(code, enhanced, f"<{self.original}>... {text}")


def _candidates(address: Address) -> list[tuple[str, tuple[str, ...]]]:
    """Keys in sendmail's order (§2.5) with the %1 %2 %3 each one passes."""
    local, d = address.local, address.domain
    user, detail = split_detail(local)
    whole: tuple[str, ...] = (local,)
    keys: list[tuple[str, tuple[str, ...]]]
    if detail is None or not user:
        keys = [(f"{local}@{d}", whole), (f"@{d}", whole)]
    else:
        parts = (user, detail, f"+{detail}")
        keys = [(f"{local}@{d}", whole)]
        if detail:
            keys.append((f"{user}++@{d}", parts))
        keys += [(f"{user}+*@{d}", parts), (f"{user}@{d}", parts)]
        if detail:
            keys.append((f"++@{d}", parts))
        keys += [(f"+*@{d}", parts), (f"@{d}", parts)]
    return [(key.lower(), params) for key, params in keys]


def _describe(params: tuple[str, ...]) -> str:
    return ", ".join(f"%{n}={p!r}" for n, p in enumerate(params, start=1))


def _has_route_characters(local: str) -> bool:
    return not local.startswith('"') and ("%" in local or "!" in local)


def _error_reply(spec: str) -> tuple[int, str, str]:
    """Read ``D.S.N:CODE text``, ``tag CODE text`` or ``tag text`` (§2.5)."""
    dsn_match = _DSN_PREFIX.match(spec)
    dsn = dsn_match.group(1) if dsn_match else None
    if dsn_match:
        rest = spec[dsn_match.end() :]
    else:
        tag, rest = [*spec.split(None, 1), "", ""][:2]
        if _CODE.fullmatch(tag):
            rest = spec
    text = _reply_text(rest)
    code_match = _CODE_PREFIX.match(text)
    if code_match is None:
        if dsn is not None:
            return int(dsn[0]) * 100 + 50, dsn, text or "Address rejected"
        return 553, "5.3.0", text or "Address rejected"
    code = int(code_match.group(1))
    text = text[code_match.end() :]
    enhanced_match = _ENHANCED_PREFIX.match(text)
    enhanced = f"{code // 100}.0.0"
    if enhanced_match:
        enhanced = enhanced_match.group(1)
        text = text[enhanced_match.end() :]
    return code, dsn or enhanced, text or "Address rejected"


def _reply_text(text: str) -> str:
    """A quoted text keeps its spacing; an unquoted one is read as words, as sendmail's
    tokenizer did."""
    text = text.strip(" \t\r\n")
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return " ".join(text.split())
