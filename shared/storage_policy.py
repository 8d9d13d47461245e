"""Where a Blob destination may write, and with whose credentials (issue 11, points 1 and 2).

- **The service's own storage account** (`AzureWebJobsStorage`, `EXPORT_STORAGE_CONNECTION`):
  only the containers `DESTINATION_CONTAINERS` names (default: the default container, `exports`;
  `*` patterns allowed), and never one of the service's own: job records, work data, SMART jtis,
  the generated data auto-export reads, the Functions host's and the durable task hub's. A job
  could otherwise overwrite job records or function keys.
- **Another account**, named by a connection string or SAS URL the request gives: its endpoint
  is checked against the outbound policy (`OUTBOUND_ALLOW`: no internal address unless listed).
  An account URL without a SAS would be signed by the service's own identity (a managed identity
  token sent to whatever host the request names): refused unless it is one of the service's own.

`DestinationPolicy.check` is called at submission (a `ValidationError` naming the field) and again
where a destination's client is made (`shared.delivery`, `shared.destinations.factory`), so a
retried job or an auto-export configuration meets the same rule. That client is then made with
`outbound=DestinationPolicy.outbound_for(connection)`: for another account, the outbound policy
is checked again at every connection the client opens (`shared.outbound_azure`), so a name that
resolves elsewhere after this check gains nothing. Pure but for DNS resolution (through the
outbound policy's resolver).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import httpx

from shared.errors import PermanentError
from shared.outbound import OutboundPolicy

__all__ = ["RESERVED_CONTAINERS", "DestinationPolicy", "DestinationRefused", "StorageAccount", "account_of"]

# The service's own containers (job store, work store, SMART jtis) and the Functions host's.
RESERVED_CONTAINERS: Final = frozenset({"export-jobs", "export-work", "smart-jti", "azure-webjobs-hosts",
                                        "azure-webjobs-secrets", "azure-webjobs-eventhub"})  # fmt: skip
# The durable task hub's containers (`{hub}-leases`, `{hub}-applease`, `{hub}-largemessages`) and
# anything the host names `azure-webjobs-...`.
RESERVED_PREFIXES: Final = ("azure-webjobs-", "bulkexporthub")
_EMULATOR_ACCOUNT: Final = "devstoreaccount1"
_PATTERN: Final = re.compile(r"^[a-z0-9*][a-z0-9*-]{0,62}$")


class DestinationRefused(PermanentError):
    """A Blob destination the policy does not allow; the message says why (never a credential),
    `part` which part of the destination is at fault (`container` or `secret`)."""

    def __init__(self, message: str, part: str = "secret") -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class StorageAccount:
    """A blob endpoint: `endpoint` (scheme, host, port and, for the emulator, the account path)."""

    endpoint: str
    signed: bool  # the connection carries its own credential (a key or a SAS)

    @property
    def key(self) -> str:
        return self.endpoint.rstrip("/").lower()


def account_of(connection: str) -> StorageAccount:
    """The blob endpoint a connection string, SAS URL or account URL names."""
    if connection.lower().startswith(("http://", "https://")):
        parts = urlsplit(connection)
        path = ""
        segments = [s for s in parts.path.split("/") if s]
        if segments and _path_style(parts.hostname or ""):
            path = "/" + segments[0]
        return StorageAccount(f"{parts.scheme}://{parts.netloc}{path}", signed=bool(parts.query))
    values: dict[str, str] = {}
    for part in connection.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            values[key.strip().lower()] = value.strip()
    if values.get("usedevelopmentstorage", "").lower() == "true":
        return StorageAccount(f"http://127.0.0.1:10000/{_EMULATOR_ACCOUNT}", signed=True)
    signed = bool(values.get("accountkey") or values.get("sharedaccesssignature"))
    if values.get("blobendpoint"):
        return StorageAccount(values["blobendpoint"].rstrip("/"), signed=signed)
    account = values.get("accountname")
    if not account:
        raise DestinationRefused(
            "the destination connection string names no account (AccountName or BlobEndpoint)"
        )
    protocol = values.get("defaultendpointsprotocol", "https")
    suffix = values.get("endpointsuffix", "core.windows.net")
    return StorageAccount(f"{protocol}://{account}.blob.{suffix}", signed=signed)


def _path_style(host: str) -> bool:
    return host == "localhost" or host.replace(".", "").isdigit() or ":" in host


def is_reserved(container: str) -> bool:
    return container in RESERVED_CONTAINERS or container.startswith(RESERVED_PREFIXES)


@dataclass(frozen=True)
class DestinationPolicy:
    own_connections: tuple[str, ...] = field(repr=False, default=())  # the service's storage
    own_containers: tuple[str, ...] = ("exports",)  # DESTINATION_CONTAINERS (patterns)
    reserved: frozenset[str] = frozenset()  # besides RESERVED_CONTAINERS: the generated data
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)

    def _own_keys(self) -> frozenset[str]:
        keys = set()
        for connection in self.own_connections:
            try:
                keys.add(account_of(connection).key)
            except DestinationRefused:
                continue
        return frozenset(keys)

    def outbound_for(self, connection: str | None) -> OutboundPolicy | None:
        """The policy a storage client for `connection` must connect under: None for the service's
        own storage (None, or an account named in settings), else the outbound policy."""
        if connection is None:
            return None
        try:
            key = account_of(connection).key
        except DestinationRefused:
            return self.outbound  # names no account: `check` refuses it, and no client is exempt
        return None if key in self._own_keys() else self.outbound

    def check(
        self, connection: str | None, container: str, *, reading: bool = False, confined: bool = False
    ) -> None:
        """Refuse (DestinationRefused) writing to `container` through `connection` (None: the
        service's own storage). `reading`: a batch's source container, which may be any of the
        service's storage but its own records, keys and work data."""
        own = connection is None
        if connection is not None:
            account = account_of(connection)
            own = account.key in self._own_keys()
            if not own:
                if not account.signed:
                    raise DestinationRefused(
                        "an account URL without a SAS would be signed with the service's own identity, "
                        "which is only used for the service's storage; give a SAS URL or a connection string"
                    )
                try:
                    self.outbound.check_url(account.endpoint)
                except httpx.ConnectError:
                    pass  # DNS may be down for a moment: the job's retries cover it
                except PermanentError as exc:  # OutboundRefused
                    raise DestinationRefused(f"the destination's storage endpoint: {exc}") from None
        if own and reading:
            if is_reserved(container):
                raise DestinationRefused(
                    f"container {container!r} belongs to the service itself and is never read by a job",
                    "container",
                )
            if confined and self.holds_exports(container):
                # Everyone's exports land there: a caller confined to its own jobs would read
                # other people's files through a batch of its own.
                raise DestinationRefused(
                    f"container {container!r} holds the exports of every user (DESTINATION_CONTAINERS); "
                    "only operators send from it",
                    "container",
                )
        elif own:
            self.check_own_container(container)

    def holds_exports(self, container: str) -> bool:
        """A container of the service's own storage that jobs write (DESTINATION_CONTAINERS)."""
        return any(fnmatch.fnmatchcase(container, pattern) for pattern in self.own_containers)

    def check_own_container(self, container: str) -> None:
        if is_reserved(container) or container in self.reserved:
            raise DestinationRefused(
                f"container {container!r} belongs to the service itself and is never a destination",
                "container",
            )
        if not self.holds_exports(container):
            allowed = ", ".join(self.own_containers) or "none"
            raise DestinationRefused(
                f"in the service's own storage only the containers DESTINATION_CONTAINERS names may be "
                f"written ({allowed}); give a connection string or SAS URL for another account",
                "container",
            )


def parse_container_patterns(text: str | None, default: str) -> tuple[str, ...]:
    """DESTINATION_CONTAINERS: comma-separated names or `*` patterns; a reserved name is an error."""
    items: Iterable[str] = (p.strip() for p in (text or default).split(","))
    patterns = tuple(p for p in items if p)
    for pattern in patterns:
        if not _PATTERN.match(pattern):
            raise ValueError(f"{pattern!r} is not a container name or pattern (a-z, 0-9, -, *)")
        if "*" not in pattern and is_reserved(pattern):
            raise ValueError(f"{pattern!r} is one of the service's own containers")
    return patterns
