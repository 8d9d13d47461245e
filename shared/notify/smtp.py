"""`SmtpSender`: a `MailSender` on the standard library's `smtplib`.

One connection per `send`: outcome mail is rare (a few messages per job end), servers close idle
sessions after a few minutes (RFC 5321 §4.5.3.2), and a pooled connection would need a liveness
probe and a lock shared between worker threads. A fresh session makes every send independent, so
a retry after any failure starts clean.

Failures are classified for the outbox's retries (see `shared.notify.base`): SMTP 4xx, a dropped
connection and socket errors (refused, reset, timeout, DNS) are transient; SMTP 5xx, a server
that does not offer the STARTTLS the settings require, and a certificate that does not verify are
permanent. Messages name the server and its reply, never the password.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from email.message import EmailMessage
from typing import Final, Literal, get_args

from shared.errors import ExportError, PermanentError, TransientError
from shared.notify.base import PartialDeliveryError

__all__ = ["DEFAULT_TIMEOUT_S", "Security", "SmtpSender"]

Security = Literal["none", "starttls", "tls"]
SECURITIES: Final[tuple[str, ...]] = get_args(Security)
DEFAULT_TIMEOUT_S: Final = 30.0  # per connect and per reply; a send is a few round trips
_REPLY_CHARS: Final = 200  # enough for a server's reason, short enough for a log line


class SmtpSender:
    """Sends each message over a new SMTP session to `host:port`.

    `security`: `none` (plain; for a loopback relay or maildev), `starttls` (plain, then
    upgraded; refuses to go on if the server does not offer it), `tls` (implicit TLS, port 465).
    `ssl_context` defaults to the system's verifying context (tests pass one trusting their CA).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if security not in SECURITIES:
            raise ValueError(f"security must be one of {', '.join(SECURITIES)}")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self.host = host
        self.port = port
        self.security: Security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self._context = ssl_context
        # smtplib's default (socket.getfqdn()) does a reverse DNS lookup per session.
        self._local_hostname = local_hostname

    def __repr__(self) -> str:
        return (
            f"SmtpSender({self.host!r}, {self.port}, security={self.security!r}, username={self.username!r})"
        )

    def send(self, message: EmailMessage) -> None:
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with self._connect() as session:
                if self.security == "starttls":
                    session.starttls(context=self._ssl_context())
                if self.username is not None and self._password is not None:
                    session.login(self.username, self._password)
                refused = session.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise self._all_refused(where, exc.recipients) from None
        except smtplib.SMTPResponseException as exc:
            raise self._by_code(where, exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientError(f"{where} closed the connection: {self._clean(str(exc))}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(
                f"{where} does not support what the settings need: {self._clean(str(exc))}"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"{where}: TLS certificate not trusted ({exc.verify_message})") from None
        except smtplib.SMTPException as exc:
            # The rest of smtplib's tree: no common auth mechanism, a malformed message.
            raise PermanentError(f"{where}: {self._clean(str(exc))}") from None
        except OSError as exc:
            # Refused, reset, timed out, name not resolved, TLS handshake cut off.
            raise TransientError(
                f"{where} unreachable: {exc.__class__.__name__}: {self._clean(str(exc))}"
            ) from None
        if refused:
            codes = {address: code for address, (code, _) in refused.items()}
            listed = ", ".join(f"{a} ({c})" for a, c in sorted(codes.items()))
            raise PartialDeliveryError(f"{where} refused some recipients: {listed}", codes)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, local_hostname=self._local_hostname,
                timeout=self.timeout, context=self._ssl_context(),
            )  # fmt: skip
        return smtplib.SMTP(self.host, self.port, local_hostname=self._local_hostname, timeout=self.timeout)

    def _ssl_context(self) -> ssl.SSLContext:
        return self._context or ssl.create_default_context()

    def _by_code(self, where: str, code: int, reply: bytes | str) -> ExportError:
        text = f"{where} answered {code} {self._clean(reply)}"
        return TransientError(text) if 400 <= code < 500 else PermanentError(text)

    def _all_refused(self, where: str, recipients: dict[str, tuple[int, bytes]]) -> ExportError:
        listed = ", ".join(
            f"{a} ({code} {self._clean(reply)})" for a, (code, reply) in sorted(recipients.items())
        )
        text = f"{where} refused every recipient: {listed}"
        if recipients and all(400 <= code < 500 for code, _ in recipients.values()):
            return TransientError(text)
        return PermanentError(text)

    def _clean(self, reply: bytes | str) -> str:
        """A server reply for a message: decoded, on one line, short, and without the password
        (a server may echo what it was sent, e.g. the base64 of an AUTH PLAIN blob)."""
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
        text = " ".join(text.split())[:_REPLY_CHARS]
        if self._password:
            for secret in _forms(self.username or "", self._password):
                text = text.replace(secret, "***")
        return text


def _forms(username: str, password: str) -> tuple[str, ...]:
    """The password as it may travel: itself, and inside AUTH PLAIN's base64."""
    plain = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return (password, plain, base64.b64encode(password.encode()).decode())
