"""Bring a Directory in line with an import plan, changing only what differs.

Running it twice changes nothing the second time: a cleartext password is hashed only
when the stored hash does not already verify it, so re-imports neither rehash (slow)
nor churn. Nothing outside the plan is removed: native additions survive a re-import.
"""

from __future__ import annotations

from dataclasses import dataclass

from daisymail.directory.base import Directory
from daisymail.directory.legacy.importer import Plan, PlannedLogin
from daisymail.directory.model import AddressRule, Login, RelayRule, SenderRule, Snapshot
from daisymail.directory.passwords import hash_password, verify_password


@dataclass(frozen=True)
class Change:
    action: str  # "add", "update", "replace"
    kind: str  # "domain", "mailbox", "address rule", ...
    name: str
    detail: str = ""

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.action} {self.kind} {self.name}{extra}"


def plan_changes(plan: Plan, current: Snapshot) -> list[Change]:
    """What apply_plan would do to a directory holding current; no hashing, no writes."""
    changes: list[Change] = []
    for name, domain in plan.domains.items():
        old = current.domains.get(name)
        if old is None:
            changes.append(Change("add", "domain", name, _domain_detail(domain.fallback)))
        elif old != domain:
            changes.append(Change("update", "domain", name, _domain_detail(domain.fallback)))
    for name, box in plan.mailboxes.items():
        old_box = current.mailboxes.get(name)
        if old_box is None:
            changes.append(Change("add", "mailbox", name, f"{box.format} {box.path}"))
        elif old_box != box:
            changes.append(
                Change("conflict", "mailbox", name, f"exists as {old_box.format} {old_box.path}")
            )
    for kind, wanted, have in (
        ("address rule", plan.address_rules, current.address_rules),
        ("sender rule", plan.sender_rules, current.sender_rules),
    ):
        for pattern, target in wanted.items():
            if pattern not in have:
                changes.append(Change("add", kind, pattern, target))
            elif have[pattern] != target:
                changes.append(Change("replace", kind, pattern, f"{have[pattern]} -> {target}"))
    relays = {r.pattern: r for r in current.relay_rules}
    for rule in plan.relay_rules:
        if rule.pattern not in relays:
            changes.append(Change("add", "relay rule", rule.pattern, rule.kind))
        elif relays[rule.pattern] != rule:
            changes.append(Change("replace", "relay rule", rule.pattern, rule.kind))
    for pl in plan.logins:
        old_login = _stored(current, pl)
        if old_login is None:
            changes.append(Change("add", "login", pl.address, f"mailbox {pl.mailbox}"))
        elif old_login.mailbox != pl.mailbox:
            changes.append(Change("replace", "login", pl.address, f"mailbox {pl.mailbox}"))
        elif not _same_secret(old_login.password_hash, pl):
            changes.append(Change("update", "login", pl.address, "password"))
    return changes


def apply_plan(plan: Plan, directory: Directory) -> list[Change]:
    """Apply the differences in one transaction; the changes made, [] when up to date."""
    current = directory.snapshot()
    changes = plan_changes(plan, current)
    if not any(c.action != "conflict" for c in changes):
        return changes
    hashes = {
        (pl.user, pl.domain): _new_hash(pl) for pl in plan.logins if _needs_new_hash(current, pl)
    }
    with directory.transaction():
        for change in changes:
            _apply(change, plan, directory, current, hashes)
    return changes


def _apply(
    change: Change,
    plan: Plan,
    d: Directory,
    current: Snapshot,
    hashes: dict[tuple[str, str], str],
) -> None:
    kind, name = change.kind, change.name
    if change.action == "conflict":
        return
    if kind == "domain":
        (d.add_domain if change.action == "add" else d.update_domain)(plan.domains[name])
    elif kind == "mailbox":
        d.add_mailbox(plan.mailboxes[name])
    elif kind == "address rule":
        if change.action == "replace":
            d.remove_address_rule(name)
        d.add_address_rule(AddressRule(name, plan.address_rules[name]))
    elif kind == "sender rule":
        if change.action == "replace":
            d.remove_sender_rule(name)
        d.add_sender_rule(SenderRule(name, plan.sender_rules[name]))
    elif kind == "relay rule":
        if change.action == "replace":
            d.remove_relay_rule(name)
        rule = next(r for r in plan.relay_rules if r.pattern == name)
        d.add_relay_rule(RelayRule(rule.pattern, rule.kind))
    elif kind == "login":
        pl = next(p for p in plan.logins if p.address == name)
        old = _stored(current, pl)
        stored = hashes.get((pl.user, pl.domain)) or (old.password_hash if old else "")
        if change.action == "update":
            d.set_password(pl.user, pl.domain, stored)
            return
        if change.action == "replace":
            d.remove_login(pl.user, pl.domain)
        d.add_login(Login(pl.user, pl.domain, stored, pl.mailbox))


def _stored(current: Snapshot, pl: PlannedLogin) -> Login | None:
    for login in current.logins:
        if login.domain == pl.domain and login.user == pl.user:
            return login
    return None


def _same_secret(stored: str, pl: PlannedLogin) -> bool:
    return stored == pl.secret if pl.hashed else verify_password(stored, pl.secret)


def _needs_new_hash(current: Snapshot, pl: PlannedLogin) -> bool:
    old = _stored(current, pl)
    return old is None or not _same_secret(old.password_hash, pl)


def _new_hash(pl: PlannedLogin) -> str:
    return pl.secret if pl.hashed else hash_password(pl.secret)


def _domain_detail(fallback: bool) -> str:
    return "legacy fallback" if fallback else "strict"
