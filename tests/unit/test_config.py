"""Config loading: defaults run, bad input names the file, the key and what is expected."""

from pathlib import Path

import pytest

from daisymail import config


def test_defaults_load_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    cfg = config.load()
    assert cfg.source == "<defaults>"
    assert cfg.listen.smtp == ["0.0.0.0:25"]
    assert cfg.relay.networks == ["127.0.0.1/32", "::1/128"]


def test_search_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "daisymail.toml").write_text('hostname = "cwd.test"\n')
    env = tmp_path / "env.toml"
    env.write_text('hostname = "env.test"\n')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('hostname = "explicit.test"\n')
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.load().hostname == "cwd.test"
    monkeypatch.setenv(config.ENV_VAR, str(env))
    assert config.load().hostname == "env.test"
    assert config.load(str(explicit)).hostname == "explicit.test"


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    f = tmp_path / "d" / "daisymail.toml"
    f.parent.mkdir()
    f.write_text('data_dir = "."\n[storage]\nmail_dir = "m"\n')
    cfg = config.load(str(f))
    assert cfg.path(cfg.storage.mail_dir) == (tmp_path / "d" / "m").resolve()
    assert cfg.database_url == f"sqlite:///{(tmp_path / 'd' / 'daisymail.db').resolve()}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1\n", "unknown key 'nope'"),
        ("[limits]\nmax_recipients = 'x'\n", "limits.max_recipients: expected an integer"),
        ("[relay]\nhosts_only = 1\n", "relay.hosts_only: expected true or false"),
        ("[listen]\nsmtp = ['nowhere']\n", "listen.smtp[0]: expected ADDR:PORT"),
        ("[relay]\nnetworks = ['10.0.0.0/33']\n", "relay.networks[0]"),
        ("[directory]\nbackend = 'ldap'\n", "directory.backend: expected one of sql, legacy"),
        ("[limits]\npop3_timeout = 60\n", "limits.pop3_timeout"),
        ("hostname = \n", "not valid TOML"),
        ("[pop3]\nunknown_option = true\n", "unknown key 'pop3.unknown_option'"),
    ],
)
def test_bad_values_name_file_key_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(str(f))
    assert str(f) in str(err.value)
    assert message in str(err.value)
