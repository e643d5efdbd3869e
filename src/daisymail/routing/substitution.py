"""sendmail's map_rewrite: how a map value's ``%n`` parameters are filled in."""

from __future__ import annotations


def substitute(value: str, key: str, params: tuple[str, ...]) -> str:
    """%0 is the key looked up, %1..%9 the parameters (missing ones are empty), %% a
    literal %; any other % is kept as it stands."""
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        nxt = value[i + 1] if i + 1 < len(value) else ""
        if ch == "%" and nxt == "%":
            out.append("%")
        elif ch == "%" and nxt and nxt in "0123456789":
            n = int(nxt)
            out.append(key if n == 0 else params[n - 1] if n <= len(params) else "")
        else:
            out.append(ch)
            i += 1
            continue
        i += 2
    return "".join(out)
