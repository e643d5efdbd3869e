"""sendmail's text files: makemap source maps (virtusertable, genericstable, access) and
class files (local-host-names, relay-domains, sendmail.cG), read as sendmail reads them.

Bytes are decoded as UTF-8 with ``surrogateescape``: UTF-8 files give real characters,
and any other byte survives a parse/write round trip unchanged. Keys are folded with
ASCII rules only (makemap runs ``tolower`` in the C locale).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from daisymail.directory.legacy.findings import Finding
from daisymail.directory.model import RelayRule
from daisymail.routing.relay import relay_rule_from_class_entry

# makemap reads with fgets into a 1024-byte buffer: a line and its newline must fit in 1023.
MAX_LINE = 1023
# C isspace() in the C locale.
_SPACE = " \t\n\v\f\r"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class MapFile:
    entries: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def parse_makemap_text(data: bytes, source: str) -> MapFile:
    """Parse ``makemap hash`` input as makemap does without options (-f, -r, -e)."""
    entries, findings = _parse_map(data, source)
    return MapFile({key: value for key, (_, value) in entries.items()}, findings)


def write_makemap_text(entries: Mapping[str, str]) -> bytes:
    """Export entries so that parse_makemap_text reads back exactly the same mapping.

    Raises ValueError for an entry the text format cannot hold (uppercase or spaced key,
    key starting with ``#``, empty value or one starting with a space, newline, over-long).
    """
    out = []
    for key, value in entries.items():
        line = f"{key}\t{value}"
        if (
            not key
            or key.startswith("#")
            or key.translate(_ASCII_LOWER) != key
            or _find_space(key) != len(key)
            or not value
            or value[0] in _SPACE
            or "\n" in value
            or "\0" in line
        ):
            raise ValueError(f"map entry {key!r} -> {value!r} cannot be written as makemap text")
        encoded = line.encode("utf-8", "surrogateescape")
        if len(encoded) + 1 > MAX_LINE:
            raise ValueError(f"map entry {key!r} is longer than {MAX_LINE} bytes")
        out.append(encoded + b"\n")
    return b"".join(out)


def parse_class_file(data: bytes, source: str) -> tuple[list[str], list[Finding]]:
    """Read a class file as the common (SCANF) sendmail builds do: the first word of each
    line, leading spaces ignored, lines starting with ``#`` skipped. Words keep their case;
    membership is case-insensitive for the caller."""
    names: list[str] = []
    findings: list[Finding] = []
    for lineno, raw in _lines(data):
        line = raw.decode("utf-8", "surrogateescape")
        if line.startswith("#"):
            continue
        words = line.split()
        if not words:
            continue
        if words[0].startswith("#"):
            findings.append(
                Finding(source, lineno, "warning", f"indented comment {words[0]!r}; skipped")
            )
            continue
        names.append(words[0])
        extra = words[1:]
        if extra and not extra[0].startswith("#"):
            findings.append(
                Finding(
                    source,
                    lineno,
                    "warning",
                    f"only the first word {words[0]!r} is used; sendmail ignored "
                    f"{' '.join(extra)!r} on this line (put each name on its own line)",
                )
            )
    return names, findings


def write_class_file(names: Iterable[str]) -> bytes:
    """One name per line; ValueError for a name the format cannot hold."""
    out = []
    for name in names:
        if not name or name.startswith("#") or name.split() != [name]:
            raise ValueError(f"{name!r} cannot be written to a class file")
        out.append(name.encode("utf-8", "surrogateescape") + b"\n")
    return b"".join(out)


def parse_access_relays(data: bytes, source: str) -> tuple[list[RelayRule], list[Finding]]:
    """Take the relay permissions out of an access map (makemap text).

    ``Connect:<ip prefix> RELAY`` becomes a network rule and ``To:<domain> RELAY`` a domain
    rule. An untagged key applied to both in sendmail: an IP prefix becomes a network rule,
    a name a domain rule (which also covers client host names, as in sendmail). Everything
    else is reported as not imported.
    """
    entries, findings = _parse_map(data, source)
    rules: list[RelayRule] = []
    for key, (lineno, value) in entries.items():
        action = value.strip(_SPACE)
        outcome = _access_relay_rule(key, action.upper())
        if isinstance(outcome, RelayRule):
            if outcome not in rules:
                rules.append(outcome)
        else:
            findings.append(
                Finding(source, lineno, "info", f"{key} {action}: not imported ({outcome})")
            )
    return rules, findings


def _access_relay_rule(key: str, action: str) -> RelayRule | str:
    """The rule an access entry grants, or why it grants none."""
    tag, sep, rest = key.partition(":")
    if not sep or tag == "ipv6":
        tag, rest = "", key
    if action != "RELAY":
        return "only RELAY entries are imported"
    if tag not in ("", "connect", "to"):
        return f"{tag.capitalize()}: entries do not grant relaying"
    try:
        rule = relay_rule_from_class_entry(rest)
    except ValueError as exc:
        return str(exc)
    if tag == "connect" and rule.kind == "domain":
        return "Connect: host names are not supported; list the client network instead"
    if tag == "to" and rule.kind == "network":
        return "To: with an address literal is not supported"
    return rule


def _lines(data: bytes) -> Iterable[tuple[int, bytes]]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return enumerate(lines, start=1)


def _find_space(text: str) -> int:
    for i, ch in enumerate(text):
        if ch in _SPACE:
            return i
    return len(text)


def _parse_map(data: bytes, source: str) -> tuple[dict[str, tuple[int, str]], list[Finding]]:
    """Entries with the line each came from, and what makemap complained about."""
    entries: dict[str, tuple[int, str]] = {}
    findings: list[Finding] = []

    def error(lineno: int, message: str) -> None:
        findings.append(Finding(source, lineno, "error", message))

    for lineno, raw in _lines(data):
        if len(raw) + 1 > MAX_LINE:
            error(lineno, f"line too long ({MAX_LINE} bytes max); skipped")
            continue
        if b"\0" in raw:
            error(lineno, "NUL byte in line; skipped")
            continue
        line = raw.decode("utf-8", "surrogateescape")
        if not line or line.startswith("#"):
            continue
        if line[0] in _SPACE:
            error(lineno, "syntax error (leading space); skipped")
            continue
        end = _find_space(line)
        key = line[:end].translate(_ASCII_LOWER)
        value = line[end:].lstrip(_SPACE)
        if not value:
            error(lineno, f"no RHS for LHS {key}; skipped")
            continue
        if key in entries:
            error(lineno, f"duplicate key {key}; the first entry is kept")
            continue
        entries[key] = (lineno, value)
    return entries, findings
