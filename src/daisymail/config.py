"""Typed settings loaded from one TOML file; every key has a default that runs.

Unknown keys and wrong types stop the start with the file, the key and what was
expected (ConfigError). Relative paths are resolved against ``data_dir``, which is
itself relative to the config file's folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daisymail.quota import parse_size

ENV_VAR = "DAISYMAIL_CONFIG"
SEARCH_PATH = ("./daisymail.toml", "/etc/daisymail/daisymail.toml")


class ConfigError(Exception):
    """The config cannot be used; str(e) names the file, the key and what is expected."""


@dataclass
class Listen:
    smtp: list[str] = field(default_factory=lambda: ["0.0.0.0:25"])
    submission: list[str] = field(default_factory=lambda: ["0.0.0.0:587"])
    submissions: list[str] = field(default_factory=lambda: ["0.0.0.0:465"])
    pop3: list[str] = field(default_factory=lambda: ["0.0.0.0:110"])
    pop3s: list[str] = field(default_factory=lambda: ["0.0.0.0:995"])
    imap: list[str] = field(default_factory=lambda: ["0.0.0.0:143"])
    imaps: list[str] = field(default_factory=lambda: ["0.0.0.0:993"])


@dataclass
class LegacySources:
    sendmail_dir: str = "/etc/mail"
    teapop_passwd: str = "/etc/teapop.passwd"
    spool_dir: str = "/var/spool/mail"


@dataclass
class DirectoryConfig:
    backend: str = "sql"
    url: str = "sqlite:///daisymail.db"
    legacy: LegacySources = field(default_factory=LegacySources)


@dataclass
class Storage:
    mail_dir: str = "mail"
    default_format: str = "maildir"
    spool_dir: str = "spool"
    quota: str = "0"  # per-mailbox storage limit (500M, 2G; 0: none); `mailbox set --quota`
    # Maildir deliveries share one flush through the intake journal (docs/design.md)
    intake_journal: bool = False


@dataclass
class TLS:
    cert: str = "tls/cert.pem"
    key: str = "tls/key.pem"
    # Per-domain certificates for SNI: "example.org" = "tls/example.org" (cert.pem, key.pem)
    sni: dict[str, str] = field(default_factory=dict)


@dataclass
class Relay:
    networks: list[str] = field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    hosts_only: bool = False


@dataclass
class Rewrite:
    masquerade_envelope: bool = False


@dataclass
class Queue:
    dir: str = "queue"
    lifetime: int = 5 * 24 * 3600
    retry_schedule: list[int] = field(default_factory=lambda: [300, 600, 1200, 2400, 4000])
    delay_warning: int = 4 * 3600
    smarthost: str = ""
    smarthost_user: str = ""
    smarthost_password: str = ""
    destination_concurrency: int = 5
    # Seconds an SMTP connection waits open for the next message to its destination.
    idle_connection_seconds: float = 2.0
    tls_required_domains: list[str] = field(default_factory=list)
    routes: dict[str, str] = field(default_factory=dict)


@dataclass
class Smtp:
    # AUTH on the MX port: off, as current MTAs ship; submission (587/465) is for users.
    mx_auth: bool = False


@dataclass
class Auth:
    # Domain for login names given without one, for every protocol; empty falls back
    # to the older [pop3] default_domain.
    default_domain: str = ""
    # Seconds a good login is remembered (an HMAC, never the password) so the same
    # password again skips the argon2 verify; 0 turns the cache off.
    cache_ttl: int = 3600


@dataclass
class Pop3:
    use_x_uidl: bool = False
    hide_imap_control_message: bool = False
    allow_plaintext_auth: bool = False
    default_domain: str = ""
    apop: bool = False
    delete_after_retr: bool = False
    delete_after_top: bool = False
    expire_days: int = 0
    login_delay: int = 0


@dataclass
class Limits:
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    max_line_length: int = 2048
    max_errors: int = 10
    max_hops: int = 50
    command_timeout: int = 300
    data_timeout: int = 600
    pop3_timeout: int = 600
    write_timeout: int = 300  # seconds a write to a client may make no progress
    max_connections: int = 2000
    max_connections_per_ip: int = 50
    auth_failure_delay: float = 2.0


@dataclass
class Log:
    level: str = "info"


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)  # "HOST:PORT"; [] = the system's
    timeout: float = 5.0


@dataclass
class Verify:
    enabled: bool = False
    authserv_id: str = ""  # "" = hostname
    dmarc_reject: bool = True
    dmarc_quarantine: bool = True
    spf_fail_without_dmarc: str = "mark"
    temperror: str = "mark"
    # ARC sealers (d= of the newest seal) whose verdict may override a DMARC failure
    trusted_arc_sealers: list[str] = field(default_factory=list)
    # processes that judge mail beside the server; -1 = one per core but one (at most 4),
    # 0 = none (judged on the server's event loop)
    workers: int = -1


@dataclass
class Filter:
    rspamd_url: str = ""  # the rspamd worker, e.g. "http://127.0.0.1:11333"; "" = off
    timeout: float = 10.0  # seconds for one check; then the message is accepted, marked


@dataclass
class SRS:
    secret: str = ""  # keys the SRS addresses of forwarded mail; "" = forwards unrewritten


@dataclass
class DKIM:
    dir: str = "dkim"
    rotate_delay: int = 3 * 24 * 3600


@dataclass
class MtaSts:
    mode: str = ""  # "" = not served; "enforce", "testing" or "none" (RFC 8461)
    mx: list[str] = field(default_factory=list)  # default: [hostname]
    max_age: int = 7 * 24 * 3600


@dataclass
class Http:
    listen: list[str] = field(default_factory=list)  # plain HTTP; [] = off
    listen_tls: list[str] = field(default_factory=list)  # HTTPS with the [tls] certificates
    metrics_networks: list[str] = field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    api: bool = False  # the admin API under /api/v1 (bearer tokens)
    client_host: str = ""  # the host mail clients are told; default: the certificate's name
    mta_sts: MtaSts = field(default_factory=MtaSts)


@dataclass
class Config:
    hostname: str = "localhost"
    data_dir: str = "."
    user: str = "daisymail"
    listen: Listen = field(default_factory=Listen)
    directory: DirectoryConfig = field(default_factory=DirectoryConfig)
    storage: Storage = field(default_factory=Storage)
    tls: TLS = field(default_factory=TLS)
    relay: Relay = field(default_factory=Relay)
    rewrite: Rewrite = field(default_factory=Rewrite)
    queue: Queue = field(default_factory=Queue)
    smtp: Smtp = field(default_factory=Smtp)
    auth: Auth = field(default_factory=Auth)
    pop3: Pop3 = field(default_factory=Pop3)
    limits: Limits = field(default_factory=Limits)
    log: Log = field(default_factory=Log)
    dns: DNS = field(default_factory=DNS)
    dkim: DKIM = field(default_factory=DKIM)
    verify: Verify = field(default_factory=Verify)
    http: Http = field(default_factory=Http)
    filter: Filter = field(default_factory=Filter)
    srs: SRS = field(default_factory=SRS)
    # Where it came from; not a TOML key.
    source: str = field(default="<defaults>", metadata={"internal": True})

    # -- resolved paths -----------------------------------------------------------------
    @property
    def base(self) -> Path:
        if self.source.startswith("<"):
            return Path(self.data_dir).resolve()
        return (Path(self.source).parent / self.data_dir).resolve()

    def path(self, value: str) -> Path:
        """A configured path, absolute or relative to the data dir."""
        p = Path(value)
        return p if p.is_absolute() else self.base / p

    @property
    def default_login_domain(self) -> str:
        """The domain for login names without one (SMTP AUTH, POP3, IMAP alike)."""
        return self.auth.default_domain or self.pop3.default_domain

    @property
    def database_url(self) -> str:
        """The directory URL with a relative SQLite path resolved against the data dir."""
        url = self.directory.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix) :]
            if rest and rest != ":memory:":
                return prefix + str(self.path(rest))
        return url


_CHOICES: dict[str, tuple[str, ...]] = {
    "directory.backend": ("sql", "legacy"),
    "storage.default_format": ("maildir", "mbox"),
    "log.level": ("debug", "info", "warning", "error"),
    "verify.spf_fail_without_dmarc": ("mark", "junk", "reject"),
    "verify.temperror": ("mark", "defer"),
}
_MTA_STS_MODES = ("", "enforce", "testing", "none")


# Every numeric setting with the smallest value that still works: a smaller one passed
# validation before, then made every session fail (issue 11, defect 9).
_MINIMUMS: tuple[tuple[str, float, str], ...] = (
    ("limits.max_message_size", 1024, "a smaller limit cannot hold a message header"),
    ("limits.max_recipients", 1, "0 would refuse every recipient"),
    ("limits.max_line_length", 1000, "RFC 5321 4.5.3.1.6: 1000-octet text lines must pass"),
    ("limits.max_errors", 1, "0 would close every session at its first reply"),
    ("limits.command_timeout", 1, "seconds a client may take for a command"),
    ("limits.data_timeout", 1, "seconds a client may take for a block of message data"),
    ("limits.pop3_timeout", 600, "RFC 1939 asks for at least 600 seconds"),
    ("limits.write_timeout", 1, "seconds a client may take no data we send"),
    ("limits.max_hops", 1, "0 would refuse every message"),
    ("limits.max_connections", 1, "0 would refuse every connection"),
    ("limits.max_connections_per_ip", 1, "0 would refuse every connection"),
    ("limits.auth_failure_delay", 0, "seconds; 0 turns the delay and the throttle off"),
    ("auth.cache_ttl", 0, "seconds a good login is remembered; 0 turns the cache off"),
    ("queue.lifetime", 1, "seconds before an undeliverable message is bounced"),
    ("queue.destination_concurrency", 1, "0 would never send anything"),
    ("queue.idle_connection_seconds", 0, "seconds; 0 = a new connection for every message"),
    ("queue.delay_warning", 0, "seconds; 0 = never"),
    ("pop3.expire_days", 0, "0 = never"),
    ("pop3.login_delay", 0, "0 = not announced"),
    ("verify.workers", -1, "-1 = one per core but one, 0 = none"),
)


def _type_name(tp: Any) -> str:
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('a ')}s"
    if origin is dict:
        return "a table of strings"
    return "a table"


def _convert(tp: Any, value: Any, where: str, src: str) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"{src}: {where}: expected {_type_name(tp)}, got {value!r}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad()
        return _build(tp, value, where + ".", src)
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise bad()
        return [_convert(item, v, f"{where}[{i}]", src) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise bad()
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    raise bad()  # pragma: no cover - all config types are handled above


def _build(cls: Any, data: dict[str, Any], prefix: str, src: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            expected = ", ".join(sorted(known))
            raise ConfigError(f"{src}: unknown key '{prefix}{key}' (known here: {expected})")
        kwargs[key] = _convert(hints[key], value, prefix + key, src)
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    src = cfg.source
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ConfigError(f"{src}: {key}: expected one of {', '.join(choices)}, got {value!r}")
    for f in dataclasses.fields(Listen):
        for i, addr in enumerate(getattr(cfg.listen, f.name)):
            try:
                parse_hostport(addr)
            except ValueError as e:
                raise ConfigError(f"{src}: listen.{f.name}[{i}]: {e}") from None
    for i, net in enumerate(cfg.relay.networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(
                f"{src}: relay.networks[{i}]: expected a network like 192.0.2.0/24, got {net!r}"
            ) from None
    for key, minimum, why in _MINIMUMS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not math.isfinite(value) or value < minimum:
            kind = "a number" if isinstance(value, float) else "an integer"
            raise ConfigError(f"{src}: {key}: expected {kind} >= {minimum} ({why}), got {value!r}")
    try:
        parse_size(cfg.storage.quota)
    except ValueError as e:
        raise ConfigError(f"{src}: storage.quota: {e}") from None
    if any(s <= 0 for s in cfg.queue.retry_schedule):
        raise ConfigError(f"{src}: queue.retry_schedule: expected positive numbers of seconds")
    if cfg.queue.smarthost:
        try:
            parse_hostport(cfg.queue.smarthost)
        except ValueError as e:
            raise ConfigError(f"{src}: queue.smarthost: {e}") from None
    for name, target in cfg.queue.routes.items():
        try:
            parse_hostport(target)
        except ValueError as e:
            raise ConfigError(f"{src}: queue.routes.{name}: {e}") from None
    for i, ns in enumerate(cfg.dns.nameservers):
        try:
            parse_hostport(ns)
        except ValueError as e:
            raise ConfigError(f"{src}: dns.nameservers[{i}]: {e}") from None
    if cfg.filter.timeout <= 0:
        raise ConfigError(f"{src}: filter.timeout > 0 expected")
    url = cfg.filter.rspamd_url
    if url and not url.startswith("http://"):
        raise ConfigError(f"{src}: filter.rspamd_url: an http:// URL expected, got {url!r}")
    if cfg.dns.timeout <= 0 or cfg.dkim.rotate_delay < 0:
        raise ConfigError(f"{src}: dns.timeout > 0 and dkim.rotate_delay >= 0 expected")
    _validate_http(cfg)
    if not cfg.hostname or any(c.isspace() for c in cfg.hostname):
        raise ConfigError(f"{src}: hostname: expected a host name, got {cfg.hostname!r}")


def _validate_http(cfg: Config) -> None:
    src, h = cfg.source, cfg.http
    for key in ("listen", "listen_tls"):
        for i, addr in enumerate(getattr(h, key)):
            try:
                parse_hostport(addr)
            except ValueError as e:
                raise ConfigError(f"{src}: http.{key}[{i}]: {e}") from None
    for i, net in enumerate(h.metrics_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(
                f"{src}: http.metrics_networks[{i}]: expected a network like 127.0.0.1/32, "
                f"got {net!r}"
            ) from None
    if h.mta_sts.mode not in _MTA_STS_MODES:
        raise ConfigError(
            f'{src}: http.mta_sts.mode: expected one of enforce, testing, none or "" (off), '
            f"got {h.mta_sts.mode!r}"
        )
    if not 0 < h.mta_sts.max_age <= 31557600:
        raise ConfigError(f"{src}: http.mta_sts.max_age: expected 1 to 31557600 seconds")
    if any(c.isspace() for c in h.client_host):
        raise ConfigError(f"{src}: http.client_host: expected a host name")


def parse_hostport(value: str) -> tuple[str, int]:
    """``ADDR:PORT`` or ``[IPv6]:PORT`` to (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected ADDR:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    cfg: Config = _build(Config, data, "", source)
    cfg.source = source
    _validate(cfg)
    return cfg


def find_config(explicit: str | None = None) -> str | None:
    """The config file to use: --config, $DAISYMAIL_CONFIG, ./daisymail.toml, /etc/..."""
    if explicit:
        return explicit
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    for candidate in SEARCH_PATH:
        if Path(candidate).is_file():
            return candidate
    return None


def load(path: str | None = None) -> Config:
    """Load the config found by find_config(); the defaults when there is none."""
    found = find_config(path)
    if found is None:
        return from_dict({}, "<defaults>")
    p = Path(found)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{found}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{found}: not valid TOML: {e}") from None
    return from_dict(data, str(p.resolve()))
