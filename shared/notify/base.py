"""The `MailSender` role: hand one finished `EmailMessage` to a mail server.

    ExportError
    ├── TransientError   may pass: connection refused or reset, timeout, SMTP 4xx (451, 421)
    └── PermanentError   cannot pass: SMTP 5xx (550 mailbox unavailable, 535 auth refused),
                         a server that refuses TLS the settings require

The outbox retries a TransientError on its schedule and records a PermanentError for good.
Implementations never put the password (or any credential) into a message, a log line or a repr.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol, runtime_checkable

from shared.errors import PermanentError

__all__ = ["MailSender", "PartialDeliveryError"]


class PartialDeliveryError(PermanentError):
    """The server took the message for some recipients and refused others. Permanent on
    purpose: sending again would deliver a second copy to those who have it; `refused` maps each
    refused address to the server's code so the caller can re-send to those alone."""

    def __init__(self, message: str, refused: dict[str, int]) -> None:
        super().__init__(message)
        self.refused = refused


@runtime_checkable
class MailSender(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver `message` to the recipients in its To/Cc headers (its Bcc is not sent on).

        Raises `shared.errors.TransientError` for what may pass and `PermanentError` for what
        cannot; returns only once the server accepted the message for every recipient.
        """
        ...
