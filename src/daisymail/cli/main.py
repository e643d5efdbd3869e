"""The `daisymail` command: a thin click front over the directory and the server.

Each command's module is imported only when that command runs: admins script hundreds of
calls like `daisymail user add`, and importing the servers, the queue runner, TLS and DNS
for each of them cost more than the command itself. A new command is one line in COMMANDS.
"""

from __future__ import annotations

import importlib

import click

from daisymail import __version__
from daisymail.cli.common import State, fail, state

# name -> "module:attribute" of the click command, imported on first use.
COMMANDS: dict[str, str] = {
    "init": "daisymail.cli.setup:init",
    "check": "daisymail.cli.setup:check",
    "resolve": "daisymail.cli.resolve:resolve",
    "import": "daisymail.cli.legacy:import_group",
    "export": "daisymail.cli.legacy:export_group",
    "sendmail": "daisymail.cli.sendmail:sendmail",
    "queue": "daisymail.cli.queue:queue",
    "domain": "daisymail.cli.admin:domain",
    "mailbox": "daisymail.cli.admin:mailbox",
    "user": "daisymail.cli.admin:user",
    "alias": "daisymail.cli.admin:alias",
    "sender": "daisymail.cli.admin:sender",
    "relay": "daisymail.cli.admin:relay",
    "dkim": "daisymail.cli.dkim:dkim",
    "dns": "daisymail.cli.dnscmd:dns_group",
    "token": "daisymail.cli.token:token",
}


class LazyGroup(click.Group):
    """A group whose subcommands (from COMMANDS) are imported when looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in COMMANDS:
            return cmd
        module_name, attr = COMMANDS[cmd_name].split(":")
        cmd = getattr(importlib.import_module(module_name), attr)
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{COMMANDS[cmd_name]} is not a click command")
        self.add_command(cmd, cmd_name)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    from daisymail.process import run

    st = state()
    code = run(st.config, st.config_path)
    if code:
        fail("server stopped with errors", code)


def main() -> None:
    cli(prog_name="daisymail")
