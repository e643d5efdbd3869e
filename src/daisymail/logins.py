"""Which account a login name means: the one rule for SMTP AUTH, POP3 and IMAP.

Names follow teapop, so existing users keep logging in with the names they always
used (SPEC §1.3, §1.4): the name is split at the first ``@`` or ``%`` (``john%acme.com``
is ``john@acme.com``; ``a%b@acme.com`` is user ``a`` at ``b@acme.com``), trailing spaces
are dropped, the domain compares case-insensitively and the user as the Domain's
``login_case_sensitive`` says. A domain with a record or any login decides alone (a
missing user there fails); otherwise the pseudo-domain ``default`` decides when it
exists, and last, for names without a domain, the configured default domain.

Pure functions over a Snapshot: no I/O, so the servers call them on the event loop.
"""

from __future__ import annotations

from daisymail.directory.model import Login, Snapshot

DIVIDERS = "@%"
DEFAULT_PSEUDO_DOMAIN = "default"


def split_login(name: str) -> tuple[str, str]:
    """Split at the first divider; the domain is lowercased, "" when there is none.

    Trailing spaces are dropped, leading ones kept, as teapop did."""
    name = name.rstrip(" ")
    cut = min((i for i in (name.find(d) for d in DIVIDERS) if i >= 0), default=-1)
    if cut < 0:
        return name, ""
    return name[:cut], name[cut + 1 :].lower()


def _decides(snapshot: Snapshot, domain: str) -> bool:
    """teapop's "first candidate entry decides": a domain with a record or any login
    owns every login name at it, even the ones it does not list."""
    return domain in snapshot.domains or any(login.domain == domain for login in snapshot.logins)


def resolve_login(snapshot: Snapshot, name: str, *, default_domain: str = "") -> Login | None:
    """The account a login name (as the client typed it) refers to, or None."""
    user, domain = split_login(name)
    if not user:
        return None
    if _decides(snapshot, domain):
        return snapshot.find_login(user, domain)
    if _decides(snapshot, DEFAULT_PSEUDO_DOMAIN):
        return snapshot.find_login(user, DEFAULT_PSEUDO_DOMAIN)
    if domain == "" and default_domain:
        return snapshot.find_login(user, default_domain.lower())
    return None


def throttle_key(name: str, login: Login | None, *, default_domain: str = "") -> str:
    """What failed logins are counted under: one key per account, however it is spelled.

    A known account counts under its own address, so ``bob%dom``, ``bob@dom``,
    ``BOB@DOM`` (where case does not matter) and ``bob@dom `` share one count. An
    unknown name counts under its normalized spelling (split, lowercased, the default
    domain filled in), so respelling a guess does not reset its count either."""
    if login is not None:
        return login.address
    user, domain = split_login(name)
    if not domain:
        domain = default_domain.lower()
    return f"{user}@{domain}".lower() if domain else user.lower()
