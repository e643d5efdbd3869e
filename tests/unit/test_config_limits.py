"""Every numeric setting refused below the value that still works (issue 11, defect 9):
before, `max_line_length = 100` or `max_errors = 0` passed validation and then every SMTP
session closed silently. The error names the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from daisymail import config
from daisymail.config_template import render
from daisymail.pop3.protocol import Settings as Pop3Settings
from daisymail.smtp.protocol import Settings as SmtpSettings


def load_with(tmp_path: Path, section: str, key: str, value: str) -> config.Config:
    path = tmp_path / "daisymail.toml"
    text = render(hostname="mail.example.test", dev=True)
    lines = text.splitlines()
    out, inside, done = [], False, False
    for line in lines:
        if line.startswith("["):
            inside = line.split("#")[0].strip() == f"[{section}]"
        if inside and line.split("=")[0].strip() == key:
            line, done = f"{key} = {value}", True
        out.append(line)
    assert done, (section, key)
    path.write_text("\n".join(out) + "\n")
    return config.load(str(path))


BAD = [
    ("limits", "max_line_length", "100"),
    ("limits", "max_line_length", "999"),
    ("limits", "max_errors", "0"),
    ("limits", "max_errors", "-1"),
    ("limits", "max_message_size", "0"),
    ("limits", "max_message_size", "100"),
    ("limits", "max_recipients", "0"),
    ("limits", "command_timeout", "0"),
    ("limits", "data_timeout", "-5"),
    ("limits", "pop3_timeout", "60"),
    ("limits", "max_connections", "0"),
    ("limits", "max_connections_per_ip", "0"),
    ("limits", "auth_failure_delay", "-1.0"),
    ("limits", "auth_failure_delay", "inf"),
    ("limits", "auth_failure_delay", "nan"),
    ("queue", "lifetime", "0"),
    ("queue", "destination_concurrency", "0"),
    ("queue", "delay_warning", "-1"),
    ("pop3", "expire_days", "-1"),
    ("pop3", "login_delay", "-1"),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD)
def test_unusable_values_are_refused_naming_file_and_key(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    with pytest.raises(config.ConfigError) as e:
        load_with(tmp_path, section, key, value)
    message = str(e.value)
    assert str(tmp_path / "daisymail.toml") in message
    assert f"{section}.{key}: expected" in message and ">=" in message


GOOD = [
    ("limits", "max_line_length", "1000"),
    ("limits", "max_errors", "1"),
    ("limits", "max_message_size", "1024"),
    ("limits", "command_timeout", "1"),
    ("limits", "auth_failure_delay", "0"),
    ("pop3", "expire_days", "0"),
]


@pytest.mark.parametrize(("section", "key", "value"), GOOD)
def test_smallest_working_values_pass_and_make_sessions(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    cfg = load_with(tmp_path, section, key, value)
    # the protocol cores accept what validation accepted (they raised before)
    SmtpSettings(
        hostname=cfg.hostname,
        max_message_size=cfg.limits.max_message_size,
        max_recipients=cfg.limits.max_recipients,
        max_line_length=cfg.limits.max_line_length,
        max_errors=cfg.limits.max_errors,
    )
    Pop3Settings(hostname=cfg.hostname, expire_days=cfg.pop3.expire_days or None)


def test_login_default_domain_falls_back_to_the_pop3_key() -> None:
    assert config.from_dict({"pop3": {"default_domain": "old.test"}}).default_login_domain == (
        "old.test"
    )
    both = {"pop3": {"default_domain": "old.test"}, "auth": {"default_domain": "new.test"}}
    assert config.from_dict(both).default_login_domain == "new.test"
    assert config.from_dict({}).smtp.mx_auth is False
