"""The directory written back as sendmail + teapop files, so an admin can go back.

Reading the output with the importer gives the same directory. What the legacy programs
cannot do with it (argon2id hashes, networks off octet boundaries) is written where it
can be and reported as a warning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from daisymail.directory.legacy.maps import write_class_file, write_makemap_text
from daisymail.directory.legacy.teapop import DEFAULT_ENTRY, EMPTY_ENTRY
from daisymail.directory.model import Login, Mailbox, Snapshot
from daisymail.directory.passwords import plaintext_secret
from daisymail.routing.relay import class_entry_from_relay_rule

# Owner and group teapop switches to for the exported textfile entries.
EXPORT_UID = "mail"
EXPORT_GID = "mail"


def export_legacy(snapshot: Snapshot, out_dir: str, *, mail_dir: str) -> list[str]:
    """Write the files into out_dir; return the warnings for the admin."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    hosted = [d for d in snapshot.domains.values() if d.fallback or d.origin == "native"]
    for d in hosted:
        if not d.fallback:
            warnings.append(
                f"{d.name} is strict in Daisy; in local-host-names sendmail treats every "
                "local user name as an address there unless it has an @domain catch-all"
            )
    files = {
        "local-host-names": write_class_file(sorted(d.name for d in hosted)),
        "sendmail.cG": write_class_file(
            sorted(d.name for d in snapshot.domains.values() if d.generics)
        ),
        "virtusertable": _map(snapshot.address_rules, warnings),
        "genericstable": _map(snapshot.sender_rules, warnings),
        "relay-domains": write_class_file(_relay_entries(snapshot, warnings)),
    }
    files.update(_teapop(snapshot, out, mail_dir, warnings))
    for name, data in files.items():
        _write(out / name, data)
    return warnings


def _map(entries: Mapping[str, str], warnings: list[str]) -> bytes:
    good: dict[str, str] = {}
    for key, value in sorted(entries.items()):
        try:
            write_makemap_text({key: value})
        except ValueError as e:
            warnings.append(f"{e}; left out")
            continue
        good[key] = value
    return write_makemap_text(good)


def _relay_entries(snapshot: Snapshot, warnings: list[str]) -> list[str]:
    entries = []
    for rule in snapshot.relay_rules:
        try:
            entries.append(class_entry_from_relay_rule(rule))
        except ValueError as e:
            warnings.append(f"{e}; left out of relay-domains")
    return entries


def _teapop(snapshot: Snapshot, out: Path, mail_dir: str, warnings: list[str]) -> dict[str, bytes]:
    by_domain: dict[str, list[Login]] = {}
    # A strict legacy domain is hosted only through its teapop.passwd line (it is not in
    # local-host-names): written with an empty password file even when it has no logins,
    # or the round trip would lose it.
    for d in snapshot.domains.values():
        if not d.fallback and d.origin != "native":
            by_domain[d.name] = []
    for login in snapshot.logins:
        by_domain.setdefault(login.domain, []).append(login)
    order = sorted(by_domain, key=lambda d: (d == DEFAULT_ENTRY, d == "", d))
    files: dict[str, bytes] = {}
    lines = []
    for domain in order:
        entry = {"": EMPTY_ENTRY}.get(domain, domain)
        pwname = f"{entry}.passwd"
        body = []
        for login in by_domain[domain]:
            line = _password_line(login, snapshot.mailboxes.get(login.mailbox), mail_dir, warnings)
            if line is not None:
                body.append(line)
        files[pwname] = "".join(body).encode("utf-8", "surrogateescape")
        lines.append(
            f"{entry}:*:textfile::0:{EXPORT_UID}:{EXPORT_GID}:{out / pwname}:{max(len(body), 1)}:\n"
        )
    files["teapop.passwd"] = "".join(lines).encode("utf-8", "surrogateescape")
    return files


def _password_line(
    login: Login, box: Mailbox | None, mail_dir: str, warnings: list[str]
) -> str | None:
    if box is None:
        warnings.append(f"{login.address}: mailbox {login.mailbox} does not exist; left out")
        return None
    path = box.path or box.name
    if not path.startswith("/"):
        path = os.path.join(mail_dir, path)
    if box.format == "maildir" and not path.endswith("/"):
        path += "/"
    secret = plaintext_secret(login.password_hash)
    if secret is None:
        secret = login.password_hash
        if secret.startswith("$argon2"):
            warnings.append(
                f"{login.address}: the password is an argon2id hash, which teapop cannot "
                "check; set a new password in the teapop file before going back"
            )
        else:
            warnings.append(
                f"{login.address}: the password is a crypt hash; stock teapop compares "
                "textfile passwords as plain text"
            )
    if ":" in secret or ":" in login.user or "\n" in secret + path:
        warnings.append(f"{login.address}: ':' or a newline cannot be written to teapop; left out")
        return None
    return f"{login.user}:{secret}:{path}\n"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
