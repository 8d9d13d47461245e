"""The one small error tree of the domain.

    ExportError
    ├── TransientError      raised: the durable retry policy runs the activity again
    │   └── RetryAfterError     the server said when to come back (HTTP 429/503 Retry-After)
    └── PermanentError      returned as a typed outcome: retrying cannot help
        ├── ValidationError     bad input; `field` names the offending field
        └── SourceDataError     a page or resource the source served is malformed

Activities raise only TransientError (durable 1.x RetryOptions cannot filter exceptions) and
turn PermanentError into an outcome the orchestrator records. Messages never contain secrets.
"""

from __future__ import annotations


class ExportError(Exception):
    """Base of every error the export domain raises on purpose."""


class TransientError(ExportError):
    """A failure that may pass: timeouts, connection errors, 5xx, throttling."""


class RetryAfterError(TransientError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(ExportError):
    """A failure retrying cannot fix: 4xx other than 429, malformed data, bad configuration."""


class ValidationError(PermanentError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class SourceDataError(PermanentError):
    """The source served something that is not what FHIR promises (names the page)."""
