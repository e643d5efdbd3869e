"""What every command shares: the config and directory, one-line errors, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, NoReturn, TypeVar

import click

from daisymail import config as config_mod
from daisymail.config import Config, ConfigError
from daisymail.directory.base import Directory, DirectoryError
from daisymail.service.errors import ServiceError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2
EXIT_FAILURE = 1


@dataclass
class State:
    config_path: str | None = None
    _config: Config | None = None
    _directory: Directory | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = config_mod.load(self.config_path)
            except ConfigError as e:
                fail(str(e))
        return self._config

    @property
    def directory(self) -> Directory:
        if self._directory is None:
            from daisymail.directory.factory import open_directory

            try:
                self._directory = open_directory(self.config)
            except DirectoryError as e:
                fail(f"cannot open the directory: {e}")
            except Exception as e:  # driver errors: unreachable server, missing file...
                fail(f"cannot open the directory at {self.config.directory.url}: {_one_line(e)}")
            self.closers.append(self._directory.close)
        return self._directory


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"daisymail: {message}", err=True)
    sys.exit(code)


def state() -> State:
    return click.get_current_context().ensure_object(State)


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn expected failures into one line on stderr and a non-zero exit."""
    try:
        yield
    except ServiceError as e:
        fail(e.message, e.exit_code)
    except DirectoryError as e:
        fail(str(e))
    except ConfigError as e:
        fail(str(e))


def to_jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, list | tuple):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    return obj


def print_json(obj: Any) -> None:
    click.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=True, ensure_ascii=False))


def print_table(rows: Sequence[Sequence[str]], headers: tuple[str, ...]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def read_password(password_stdin: bool) -> str:
    """One line from stdin, or a twice-typed prompt on a terminal; never from argv."""
    if password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            fail("no password on standard input", EXIT_USAGE)
        return password
    if not sys.stdin.isatty():
        fail("standard input is not a terminal: use --password-stdin", EXIT_USAGE)
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        fail("empty password", EXIT_USAGE)
    return str(password)
