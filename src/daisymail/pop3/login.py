"""teapop-compatible login names: which account a POP3 / SMTP AUTH name refers to.

teapop split names at the first ``@`` or ``%`` and chose a ``teapop.passwd`` entry by
domain, with ``empty`` for names without a domain and ``default`` as the fallback
(SPEC §1.3, §1.4). Existing users keep logging in with the names they always used.
"""

from __future__ import annotations

from daisymail.directory.model import Login, Snapshot

DIVIDERS = "@%"
DEFAULT_PSEUDO_DOMAIN = "default"


def split_login(name: str) -> tuple[str, str]:
    """Split at the first divider: ``a%b@acme.com`` is user ``a`` at ``b@acme.com``.

    Trailing spaces are dropped (leading ones are kept, as teapop did); the domain is
    lowercased because domains compare case-insensitively. No divider: domain "".
    """
    name = name.rstrip(" ")
    cut = min((i for i in (name.find(d) for d in DIVIDERS) if i >= 0), default=-1)
    if cut < 0:
        return name, ""
    return name[:cut], name[cut + 1 :].lower()


def _decides(snapshot: Snapshot, domain: str) -> bool:
    """teapop's "first candidate entry decides": a domain with a record or any login
    owns every login name at it, even the ones it does not list."""
    return domain in snapshot.domains or any(login.domain == domain for login in snapshot.logins)


def find_account(
    user: str, domain: str, snapshot: Snapshot, *, default_domain: str
) -> Login | None:
    """The account a split login name refers to, or None.

    Order: the domain itself ("" is teapop's ``empty`` entry); when it has neither a
    Domain record nor logins, the pseudo-domain ``default`` if it has either; and last,
    for names without a domain, default_domain. User case follows the Domain's
    login_case_sensitive (pseudo-domains without a record are case-sensitive).
    """
    domain = domain.lower()
    if _decides(snapshot, domain):
        return snapshot.find_login(user, domain)
    if _decides(snapshot, DEFAULT_PSEUDO_DOMAIN):
        return snapshot.find_login(user, DEFAULT_PSEUDO_DOMAIN)
    if domain == "" and default_domain:
        return snapshot.find_login(user, default_domain.lower())
    return None
