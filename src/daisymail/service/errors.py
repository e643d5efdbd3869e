"""One error type for every admin operation, saying which input was wrong and how.

``kind`` maps to a CLI exit status and an HTTP status the same way for every caller:
invalid input (2 / 400), not found (1 / 404), refused by the data's state (1 / 409).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from daisymail.directory.base import Conflict, DirectoryError, NotFound

Kind = Literal["invalid", "not_found", "conflict"]
EXIT_CODES: dict[str, int] = {"invalid": 2, "not_found": 1, "conflict": 1}
HTTP_STATUS: dict[str, int] = {"invalid": 400, "not_found": 404, "conflict": 409}


class ServiceError(Exception):
    def __init__(self, message: str, field: str | None = None, kind: Kind = "invalid") -> None:
        super().__init__(message)
        self.message, self.field, self.kind = message, field, kind

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.kind]


def invalid(message: str, field: str) -> ServiceError:
    return ServiceError(message, field, "invalid")


def not_found(message: str, field: str | None = None) -> ServiceError:
    return ServiceError(message, field, "not_found")


def conflict(message: str, field: str | None = None) -> ServiceError:
    return ServiceError(message, field, "conflict")


@contextmanager
def directory_errors(field: str | None = None) -> Iterator[None]:
    """The directory's refusals as ServiceErrors, keeping their one-line message."""
    try:
        yield
    except NotFound as e:
        raise not_found(str(e), field) from None
    except Conflict as e:
        raise conflict(str(e), field) from None
    except DirectoryError as e:
        raise conflict(str(e), field) from None
