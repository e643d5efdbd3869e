"""What the legacy parsers report about lines they skipped or read in a surprising way.

Severity convention: "error" = the line was not imported because the legacy program
rejected it too; "warning" = imported or skipped in a way the admin may not expect (the
legacy program silently did the same); "info" = deliberately not imported by Daisy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    source: str
    line: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.severity}: {self.message}"
