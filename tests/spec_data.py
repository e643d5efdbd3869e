"""The legacy tables of SPEC.md §5.2–§5.3, shared by unit and integration tests."""

from __future__ import annotations

from daisymail.directory.base import Directory
from daisymail.directory.legacy.maps import parse_class_file, parse_makemap_text
from daisymail.directory.model import AddressRule, Domain, Mailbox

LOCAL_HOST_NAMES = (
    b"# local host names\nmail.hosting.test\nacme.com\nExample.ORG\nbar.net baz.net\n"
    b"   spaced.test\ncase.test\n"
)

VIRTUSERTABLE = b"""john@acme.com\t\tjohnacme
info@acme.com\t\tjane@elsewhere.example
joe@acme.com\t\terror:nouser 550 No such user here
jax@acme.com\t\terror:5.7.0:550 Address invalid
sales+*@acme.com\tsalesbox+%2
bob+spam@acme.com\tspamtrap
bob++@acme.com\t\tbobplus-%2
@acme.com\t\tcatchall
@example.org\t\t%1@other.example
alias@example.org\tjohn@acme.com
Mixed@Example.ORG\tmixeduser
plus+*@bar.net\t\t%1-%2-%3
+*@bar.net\t\tp-%1-%2-%3
@baz.net\t\t%1%3@elsewhere.example
nocode@acme.com\t\terror:nouser User unknown here
tempfail@acme.com\terror:4.2.2:450 mailbox full
quoted@acme.com\t\terror:5.1.1:"550 Sorry, no mailbox here by that name"
loop@example.org\tloop@example.org
dot.ted@acme.com\tdotted
@case.test\t\t%1
"""

MAILBOXES = (
    "johnacme",
    "catchall",
    "salesbox",
    "spamtrap",
    "bobplus-x",
    "mixeduser",
    "dotted",
    "casetest",
    "someuser",
    "other",
)


def load_virtusertable_into(d: Directory) -> None:
    """Domains (imported, so with sendmail's fallback rule), mailboxes and rules."""
    names, _ = parse_class_file(LOCAL_HOST_NAMES, "local-host-names")
    with d.transaction():
        for name in names:
            d.add_domain(
                Domain(name=name.lower(), fallback=True, login_case_sensitive=True, origin="legacy")
            )
        for box in MAILBOXES:
            d.add_mailbox(Mailbox(name=box, format="maildir"))
        for key, value in parse_makemap_text(VIRTUSERTABLE, "virtusertable").entries.items():
            d.add_address_rule(AddressRule(pattern=key, target=value))
