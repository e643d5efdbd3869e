"""SPF (RFC 7208): check_host() over an injected resolver.

The whole record is parsed before anything is evaluated (a syntax error anywhere is a
permerror, 4.6), lookups are counted across includes and redirects (at most 10 terms
that cause DNS lookups, at most 2 that find nothing, 4.6.4), and a DNS failure is a
temperror, never a guess. ``%{p}`` expands to "unknown": RFC 7208 discourages it and
resolving it costs lookups nobody accounts for.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass, field

from daisymail.dns import DNSError, NotFound, Resolver, TempFail

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
MAX_LOOKUPS = 10
MAX_VOID = 2
MAX_NAMES = 10  # MX hosts per mx, names per ptr (4.6.4)
DEFAULT_EXPLANATION = "%{d} does not allow %{i} to send mail for %{s}"

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_MACRO = re.compile(r"%(?:\{([a-zA-Z])(\d*)(r?)([.\-+,/_=]*)\}|(.))")
_CIDR = re.compile(r"^(.*?)(?:/(\d+))?(?://(\d+))?$")
_NAME = re.compile(r"^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*\.?$")


@dataclass(frozen=True)
class SPFResult:
    result: str
    domain: str
    explanation: str = ""  # for fail: the domain's exp= text, or a default
    reason: str = ""  # what matched or what went wrong, for logs and comments


class PermError(Exception):
    pass


@dataclass
class _Term:
    qualifier: str
    name: str  # mechanism or modifier name, lowercase
    arg: str | None  # domain-spec / address, unexpanded
    cidr4: int | None = None
    cidr6: int | None = None


@dataclass
class _Record:
    directives: list[_Term]
    redirect: str | None
    exp: str | None


@dataclass
class _Context:
    ip: IP
    sender: str  # local@domain, never empty
    helo: str
    receiver: str
    resolver: Resolver
    lookups: int = 0
    voids: int = 0
    now: float = field(default_factory=time.time)


@functools.lru_cache(maxsize=1024)
def parse_record(text: str) -> _Record:
    """An SPF record to its terms; PermError on any syntax error. Kept by text (the
    result is only read): a busy MX checks the same senders' records again and again."""
    terms = text.split(" ")[1:]
    directives: list[_Term] = []
    mods: dict[str, str] = {}
    for term in terms:
        if not term:
            continue
        m = re.match(r"^([a-zA-Z][a-zA-Z0-9_.-]*)=(.*)$", term)
        if m:
            name = m.group(1).lower()
            if name in mods and name in ("redirect", "exp"):
                raise PermError(f"{name}= given twice")
            _check_macros(m.group(2))
            mods[name] = m.group(2)
            continue
        qualifier = "+"
        if term[0] in QUALIFIERS:
            qualifier, term = term[0], term[1:]
        m = re.match(r"^([a-zA-Z0-9]+)(.*)$", term)
        if not m or m.group(1).lower() not in MECHANISMS:
            raise PermError(f"unknown mechanism {term!r}")
        name, rest = m.group(1).lower(), m.group(2)
        directives.append(_parse_mechanism(qualifier, name, rest))
    return _Record(directives, mods.get("redirect"), mods.get("exp"))


def _parse_mechanism(qualifier: str, name: str, rest: str) -> _Term:
    if name == "all":
        if rest:
            raise PermError(f"all takes no argument: {rest!r}")
        return _Term(qualifier, name, None)
    if name in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise PermError(f"{name} needs an address")
        addr, _, bits = rest[1:].partition("/")
        try:
            net = ipaddress.ip_network(f"{addr}/{bits or (32 if name == 'ip4' else 128)}", False)
        except ValueError:
            raise PermError(f"bad {name} network {rest[1:]!r}") from None
        if (net.version == 4) != (name == "ip4") or (bits and not bits.isdigit()):
            raise PermError(f"bad {name} network {rest[1:]!r}")
        return _Term(qualifier, name, rest[1:])
    cidr4 = cidr6 = None
    if name in ("a", "mx"):
        m = _CIDR.match(rest)
        assert m is not None  # the pattern matches any string
        rest = m.group(1)
        cidr4 = int(m.group(2)) if m.group(2) else None
        cidr6 = int(m.group(3)) if m.group(3) else None
        if (cidr4 is not None and cidr4 > 32) or (cidr6 is not None and cidr6 > 128):
            raise PermError(f"bad prefix length in {name}{rest}")
    if rest and not rest.startswith(":"):
        raise PermError(f"bad {name} argument {rest!r}")
    arg = rest[1:] if rest else None
    if arg is not None:
        if not arg:
            raise PermError(f"empty domain in {name}")
        _check_macros(arg)
    elif name in ("include", "exists"):
        raise PermError(f"{name} needs a domain")
    return _Term(qualifier, name, arg, cidr4, cidr6)


def _check_macros(text: str) -> None:
    rest = _MACRO.sub("", text)
    if "%" in rest:
        raise PermError(f"bad macro in {text!r}")
    for m in _MACRO.finditer(text):
        if m.group(5) is not None and m.group(5) not in "%_-":
            raise PermError(f"bad macro in {text!r}")
        if m.group(1) and m.group(1).lower() not in "slodiphvcrt":
            raise PermError(f"unknown macro letter {m.group(1)!r}")


def expand(text: str, ctx: _Context, domain: str, explain: bool = False) -> str:
    """Macro expansion (RFC 7208 7); c, r and t only in explanations."""
    local, _, sdomain = ctx.sender.rpartition("@")
    ip = ctx.ip

    def value(letter: str) -> str:
        if letter == "s":
            return ctx.sender
        if letter == "l":
            return local
        if letter == "o":
            return sdomain
        if letter == "d":
            return domain
        if letter == "i":
            if ip.version == 4:
                return str(ip)
            return ".".join(ip.exploded.replace(":", ""))
        if letter == "p":
            return "unknown"
        if letter == "v":
            return "in-addr" if ip.version == 4 else "ip6"
        if letter == "h":
            return ctx.helo
        if not explain:
            raise PermError(f"macro %{{{letter}}} only in exp")
        if letter == "c":
            return str(ip)
        if letter == "r":
            return ctx.receiver or "unknown"
        return str(int(ctx.now))  # t

    def sub(m: re.Match[str]) -> str:
        if m.group(5) is not None:
            return {"%": "%", "_": " ", "-": "%20"}[m.group(5)]
        letter, digits, reverse, delims = m.groups()[:4]
        parts = re.split("[" + re.escape(delims or ".") + "]", value(letter.lower()))
        if reverse:
            parts.reverse()
        if digits:
            if int(digits) == 0:
                raise PermError("macro keeps zero labels")
            parts = parts[-int(digits) :]
        out = ".".join(parts)
        return urllib.parse.quote(out, safe="") if letter.isupper() else out

    out = _MACRO.sub(sub, text)
    if not explain:
        out = out.rstrip(".")
        while len(out) > 253 and "." in out:
            out = out.partition(".")[2]
    return out


_VERSION = re.compile(r"(?i)^v=spf1( |$)")


@functools.lru_cache(maxsize=4096)
def _client_address(ip: str) -> IP:
    """The client's address (IPv4-mapped IPv6 as IPv4); parsed once per client."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


@functools.lru_cache(maxsize=4096)
def _network(arg: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An ip4:/ip6: argument (checked by parse_record), parsed once per text."""
    return ipaddress.ip_network(arg, strict=False)


async def check_host(
    ip: str,
    domain: str,
    sender: str,
    resolver: Resolver,
    helo: str = "",
    receiver: str = "",
    now: float | None = None,
) -> SPFResult:
    """The SPF result for ``ip`` sending as ``sender`` (MAIL FROM, or postmaster@HELO)."""
    addr = _client_address(ip)
    if "@" not in sender:
        sender = f"postmaster@{sender or domain}"
    elif sender.startswith("@"):
        sender = "postmaster" + sender
    ctx = _Context(addr, sender, helo, receiver, resolver)
    if now is not None:
        ctx.now = now
    return await _check(ctx, domain.rstrip(".").lower())


async def _check(ctx: _Context, domain: str) -> SPFResult:
    if not _NAME.match(domain) or "." not in domain or len(domain) > 253:
        return SPFResult("none", domain, reason="not a domain name")
    try:
        records = [r for r in await ctx.resolver.txt(domain) if _VERSION.match(r)]
    except NotFound:
        records = []
    except TempFail as e:
        return SPFResult("temperror", domain, reason=str(e))
    if not records:
        return SPFResult("none", domain, reason="no SPF record")
    if len(records) > 1:
        return SPFResult("permerror", domain, reason="more than one SPF record")
    try:
        record = parse_record(records[0])
        return await _evaluate(ctx, domain, record)
    except PermError as e:
        return SPFResult("permerror", domain, reason=str(e))
    except TempFail as e:
        return SPFResult("temperror", domain, reason=str(e))


def _count(ctx: _Context) -> None:
    ctx.lookups += 1
    if ctx.lookups > MAX_LOOKUPS:
        raise PermError(f"more than {MAX_LOOKUPS} DNS lookups")


def _void(ctx: _Context) -> None:
    ctx.voids += 1
    if ctx.voids > MAX_VOID:
        raise PermError(f"more than {MAX_VOID} void lookups")


async def _evaluate(ctx: _Context, domain: str, record: _Record) -> SPFResult:
    for term in record.directives:
        if await _matches(ctx, domain, term):
            result = QUALIFIERS[term.qualifier]
            text = f"{term.name}{':' + term.arg if term.arg else ''}"
            explanation = await _explain(ctx, domain, record.exp) if result == "fail" else ""
            return SPFResult(result, domain, explanation, f"matched {text}")
    if record.redirect is not None:
        _count(ctx)
        target = expand(record.redirect, ctx, domain)
        res = await _check(ctx, target)
        if res.result == "none":
            return SPFResult("permerror", target, reason=f"redirect to {target}: no SPF record")
        return res
    return SPFResult("neutral", domain, reason="no mechanism matched")


async def _addresses(ctx: _Context, name: str) -> list[IP]:
    lookup = ctx.resolver.a if ctx.ip.version == 4 else ctx.resolver.aaaa
    return [ipaddress.ip_address(a) for a in await lookup(name)]


def _in(ctx: _Context, addrs: list[IP], term: _Term) -> bool:
    bits = term.cidr4 if ctx.ip.version == 4 else term.cidr6
    for a in addrs:
        if bits is None and a == ctx.ip:
            return True
        if bits is not None and ctx.ip in ipaddress.ip_network(f"{a}/{bits}", strict=False):
            return True
    return False


async def _matches(ctx: _Context, domain: str, term: _Term) -> bool:
    name = term.name
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        assert term.arg is not None
        net = _network(term.arg)
        return net.version == ctx.ip.version and ctx.ip in net
    _count(ctx)
    target = expand(term.arg, ctx, domain) if term.arg else domain
    if name == "include":
        res = await _check(ctx, target)
        if res.result == "temperror":
            raise TempFail(res.reason)
        if res.result in ("permerror", "none"):
            raise PermError(f"include:{target}: {res.result} ({res.reason})")
        return res.result == "pass"
    try:
        if name == "a":
            return _in(ctx, await _addresses(ctx, target), term)
        if name == "exists":
            return bool(await ctx.resolver.a(target))
        if name == "mx":
            hosts = [m.exchange for m in await ctx.resolver.mx(target) if m.exchange]
            if len(hosts) > MAX_NAMES:
                raise PermError(f"{target} has more than {MAX_NAMES} MX records")
            for host in hosts:
                try:
                    if _in(ctx, await _addresses(ctx, host), term):
                        return True
                except NotFound:
                    continue
            return False
    except NotFound:
        _void(ctx)
        return False
    return await _ptr_matches(ctx, target)


async def _ptr_matches(ctx: _Context, target: str) -> bool:
    """ptr: a validated name of the client equal to or under the target (5.5)."""
    try:
        names = (await ctx.resolver.ptr(str(ctx.ip)))[:MAX_NAMES]
    except NotFound:
        _void(ctx)
        return False
    except DNSError:
        return False
    for name in names:
        n = name.lower().rstrip(".")
        if n != target and not n.endswith("." + target):
            continue
        try:
            if ctx.ip in await _addresses(ctx, n):
                return True
        except DNSError:
            continue
    return False


async def _explain(ctx: _Context, domain: str, exp: str | None) -> str:
    """The exp= text (6.2); any problem falls back to the default explanation."""
    if exp is not None:
        try:
            name = expand(exp, ctx, domain)
            texts = await ctx.resolver.txt(name)
            if len(texts) == 1 and texts[0].isascii():
                _check_macros(texts[0])
                return expand(texts[0], ctx, domain, explain=True)
        except (DNSError, PermError):
            pass
    return expand(DEFAULT_EXPLANATION, ctx, domain, explain=True)
