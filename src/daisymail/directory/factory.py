"""Choose the Directory backend from the config (the one place that knows them all)."""

from __future__ import annotations

from daisymail.config import Config
from daisymail.directory.base import Directory


def open_directory(cfg: Config, *, create: bool = False) -> Directory:
    if cfg.directory.backend == "legacy":
        from daisymail.directory.legacy.live import LegacyDirectory
        from daisymail.directory.legacy.sources import LegacyPaths

        legacy = cfg.directory.legacy
        return LegacyDirectory(
            LegacyPaths(
                str(cfg.path(legacy.sendmail_dir)),
                str(cfg.path(legacy.teapop_passwd)),
                str(cfg.path(legacy.spool_dir)),
            )
        )
    from daisymail.directory.sql import SqlDirectory

    return SqlDirectory(cfg.database_url, create=create)
