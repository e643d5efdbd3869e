"""`daisymail import legacy` and `daisymail export legacy`: the way in from sendmail +
teapop, and the way back."""

from __future__ import annotations

import click

from daisymail.cli.common import EXIT_FAILURE, errors_as_messages, fail, print_json, state
from daisymail.directory.legacy.sources import LegacyPaths


@click.group("import")
def import_group() -> None:
    """Import a directory from other mail software."""


@click.group("export")
def export_group() -> None:
    """Write the directory in other mail software's formats."""


@import_group.command("legacy")
@click.option(
    "--sendmail-dir", help="Where local-host-names, virtusertable... are (default: config)."
)
@click.option("--teapop-passwd", help="The teapop.passwd file (default: config).")
@click.option(
    "--spool-dir",
    help="Where procmail delivered, /var/spool/mail/USER (default: the base directory "
    "teapop.passwd names, else the config).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Change nothing and fail when there are findings.")
@click.option(
    "--spool-group",
    default="mail",
    show_default=True,
    help="The group Daisy's service user is in; spool files must be group read-write.",
)
@click.option(
    "--fix-permissions",
    is_flag=True,
    help="Make each spool file and directory the report names usable by --spool-group "
    "(chgrp, chmod g+rw; owners are kept). Needs root.",
)
def import_legacy(
    sendmail_dir: str | None,
    teapop_passwd: str | None,
    spool_dir: str | None,
    dry_run: bool,
    as_json: bool,
    strict: bool,
    spool_group: str,
    fix_permissions: bool,
) -> None:
    """Import sendmail's and teapop's files; safe to run again (changes only what differs)."""
    from daisymail.directory.legacy.apply import apply_plan, plan_changes
    from daisymail.directory.legacy.importer import read_legacy
    from daisymail.directory.legacy.permissions import spool_permissions

    st = state()
    cfg = st.config
    if cfg.directory.backend == "legacy":
        fail('directory.backend is "legacy": the files are served live; switch to "sql" to import')
    paths = LegacyPaths(
        sendmail_dir or str(cfg.path(cfg.directory.legacy.sendmail_dir)),
        teapop_passwd or str(cfg.path(cfg.directory.legacy.teapop_passwd)),
        spool_dir or str(cfg.path(cfg.directory.legacy.spool_dir)),
        spool_from_teapop=spool_dir is None,
    )
    plan = read_legacy(paths)
    # Only a server that drops to a service user needs the spool group-writable.
    perm_findings, fixes = (
        spool_permissions(plan, spool_group) if cfg.user or fix_permissions else ([], [])
    )
    fixed: list[str] = []
    if fix_permissions and not dry_run:
        for fix in fixes:
            try:
                fix.apply()
            except OSError as e:
                fail(f"cannot fix the permissions of {fix.path}: {e.strerror}", EXIT_FAILURE)
            fixed.append(fix.path)
    else:
        plan.findings.extend(perm_findings)
    refused = strict and bool(plan.findings)
    with errors_as_messages():
        directory = st.directory
        if dry_run or refused or plan.empty:
            changes = plan_changes(plan, directory.snapshot())
            applied = False
        else:
            changes = apply_plan(plan, directory)
            applied = True
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "applied": applied,
                "changes": [
                    {"action": c.action, "kind": c.kind, "name": c.name, "detail": c.detail}
                    for c in changes
                ],
                "findings": plan.findings,
                "permissions_fixed": fixed,
            }
        )
    else:
        for finding in plan.findings:
            click.echo(str(finding))
        for path in fixed:
            click.echo(f"fixed: {path} is now usable by group {spool_group}")
        verb = "would" if not applied else "did"
        for change in changes:
            click.echo(f"{verb}: {change}")
        if plan.empty:
            pass  # said below, with the exit status
        elif not [c for c in changes if c.action != "conflict"]:
            click.echo("nothing to change: the directory already matches the legacy files")
        elif not applied:
            click.echo(
                "dry run: nothing changed"
                if dry_run
                else "nothing changed (--strict and findings)"
                if refused
                else "nothing changed"
            )
        from daisymail.cli.imap_notes import mbox_notes

        for line in mbox_notes(plan.mailboxes.values()):
            click.echo(line)
        click.echo(f"{len(plan.findings)} finding(s), {len(changes)} change(s)")
    if plan.empty:
        fail("nothing could be imported (see the findings above)", EXIT_FAILURE)
    if refused:
        fail(f"--strict: {len(plan.findings)} finding(s); nothing changed", EXIT_FAILURE)


@export_group.command("legacy")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def export_legacy(out_dir: str) -> None:
    """Write sendmail and teapop files equivalent to the directory into DIR."""
    from daisymail.directory.legacy.exporter import export_legacy as export

    st = state()
    cfg = st.config
    with errors_as_messages():
        snap = st.directory.snapshot()
    try:
        warnings = export(snap, out_dir, mail_dir=str(cfg.path(cfg.storage.mail_dir)))
    except OSError as e:
        fail(f"cannot write to {out_dir}: {e.strerror}")
    for line in warnings:
        click.echo(f"warning: {line}")
    click.echo(f"wrote the legacy files to {out_dir}")
