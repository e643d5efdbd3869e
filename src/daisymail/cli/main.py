"""The `daisymail` command: a thin click front over the directory and the server."""

from __future__ import annotations

import click

from daisymail import __version__
from daisymail.cli import admin, legacy, queue, resolve, sendmail, setup, token
from daisymail.cli.common import State, fail, state


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="DAISYMAIL_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (else $DAISYMAIL_CONFIG, ./daisymail.toml, /etc/daisymail/daisymail.toml).",
)
@click.version_option(__version__, prog_name="daisymail")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Daisy: a mail server for many virtual domains."""
    st = ctx.ensure_object(State)
    st.config_path = config_path
    ctx.call_on_close(lambda: [c() for c in st.closers])


@cli.command()
def serve() -> None:
    """Run the server in the foreground (SMTP, submission, POP3) until SIGTERM."""
    from daisymail.app import run

    st = state()
    code = run(st.config, st.config_path)
    if code:
        fail("server stopped with errors", code)


cli.add_command(setup.init)
cli.add_command(setup.check)
cli.add_command(resolve.resolve)
cli.add_command(legacy.import_group)
cli.add_command(legacy.export_group)
cli.add_command(sendmail.sendmail)
cli.add_command(queue.queue)
cli.add_command(token.token)
for group in (admin.domain, admin.mailbox, admin.user, admin.alias, admin.sender, admin.relay):
    cli.add_command(group)


def main() -> None:
    cli(prog_name="daisymail")
