"""A legacy sendmail + teapop tree on disk, built from the SPEC.md §5.2–§5.7 vectors.

Layout under root: ``etc/mail/`` (sendmail files), ``etc/sendmail.cG``,
``etc/teapop.passwd`` and the password files, ``spool/`` (the mail spool, ``S``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daisymail.directory.legacy.sources import LegacyPaths
from tests.spec_data import LOCAL_HOST_NAMES, VIRTUSERTABLE

GENERICSTABLE = (
    b"johnacme\t\t\tjohn@acme.com\njaneacme@mail.hosting.test\tjane@acme.com\n"
    b"sam\t\t\t\tsamuel\n@mail.hosting.test\t\t%1@acme.com\n"
)
SENDMAIL_CG = b"acme.com\nmail.hosting.test\n"
RELAY_DOMAINS = b"acme.com\nfriend.example\n192.168.5\n"
ACCESS = b"Connect:10.1.2\tRELAY\nTo:partner.example\tRELAY\nFrom:spam.example\tREJECT\n"

TEAPOP_PASSWD = """acme.com:*:textfile:S:0:nobody:mail:E/acme.com.passwd:10:
Example.ORG:*:textfile:S:0:nobody:mail:E/example.org.passwd:10:   ; trailing comment
legacy.test:*:textfile::0:nobody:mail:E/legacy.passwd
hashed.test:*:textfile:S:1:nobody:mail:E/hashed.passwd:10:
max.test:*:textfile:S:0:nobody:mail:E/max.passwd:2:
empty:*:textfile:S:0:nobody:mail:E/empty.passwd:10:
default:*:reject
legacy2.test:*:textfile::0:nobody:mail:E/legacy.passwd:
legacy3.test:*:textfile::0:nobody:mail:E/legacy.passwd::
legacy4.test:*:textfile::0:nobody:mail:E/legacy.passwd:5:
"""

PASSWORD_FILES = {
    "acme.com.passwd": b"john:j04n4CmE:jsmith\n# comment\n;comment2\n  mary:secret:mary\n"
    b"bob:pw:bobbox\n\nafterblank:pw:after\nnonl:pw:nonl",
    "example.org.passwd": b"john:other:exjohn\n",
    "legacy.passwd": b"john:legacypw:S/legacyjohn\n",
    "hashed.passwd": b"john:pw:jsmith\n",
    "max.passwd": b"u1:pw:u1\nu2:pw:u2\nu3:pw:u3\n",
    "empty.passwd": b"plain:pw:plainbox\n",
}


@dataclass
class LegacyTree:
    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def mail(self) -> Path:
        return self.root / "etc" / "mail"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def paths(self) -> LegacyPaths:
        return LegacyPaths(str(self.mail), str(self.etc / "teapop.passwd"), str(self.spool))

    def write(self, rel: str, data: bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def teapop(self, text: str) -> None:
        text = text.replace("E/", f"{self.etc}/").replace(":S:", f":{self.spool}:")
        text = text.replace(":S/", f":{self.spool}/")
        self.write("etc/teapop.passwd", text.encode())

    def password_file(self, name: str, data: bytes) -> None:
        self.write(f"etc/{name}", data.replace(b":S/", f":{self.spool}/".encode()))


def build_spec_tree(root: Path) -> LegacyTree:
    """The SPEC tree: §5.2 class file, §5.3 virtusertable, §5.4 genericstable, §5.5 relays,
    §5.7 teapop files."""
    tree = LegacyTree(root)
    tree.spool.mkdir(parents=True)
    tree.write("etc/mail/local-host-names", LOCAL_HOST_NAMES)
    tree.write("etc/mail/virtusertable", VIRTUSERTABLE)
    tree.write("etc/mail/genericstable", GENERICSTABLE)
    tree.write("etc/mail/relay-domains", RELAY_DOMAINS)
    tree.write("etc/mail/access", ACCESS)
    tree.write("etc/sendmail.cG", SENDMAIL_CG)
    tree.teapop(TEAPOP_PASSWD)
    for name, data in PASSWORD_FILES.items():
        tree.password_file(name, data)
    return tree
