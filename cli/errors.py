"""The errors of the command line; each one's text is the single line a person reads.

CliError            exit code 3, the message printed as `error: <message>`
 ├── ConfigError    a bad --url, an unreadable key file, a bad body file or flag
 └── ApiError       the service could not be reached, or answered an error (`status` set)
"""

from __future__ import annotations

__all__ = ["ApiError", "CliError", "ConfigError"]


class CliError(Exception):
    """A failure the user can act on; `str()` is one line, never a secret."""


class ConfigError(CliError):
    """The command line, the environment or a file given to it is not usable."""


class ApiError(CliError):
    """A call to the service failed: `status` is the HTTP status, None when there was no answer;
    `transient` says that trying again later may work (no answer, 429, 5xx)."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
