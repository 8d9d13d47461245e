"""One item to one destination: the step every kind of file-moving job shares (batches, sessions).

`deliver` streams an item from its source to a Blob container or an HTTP PUT URL
(`shared.transfer`), reports bytes through `progress`, and when `progress` raises `Cancelled`
removes what the cancelled attempt left (a partial PUT, staged blocks) before re-raising. The
destination's credentials come from the secret store by the spec's secret name; a Blob
destination without one writes with the service's own storage connection.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.contracts import BlobDestinationSpec
from shared.deps import Deps
from shared.destinations.blob import container_client
from shared.destinations.http_put import HttpPutDestination, PutDestinationSpec
from shared.items.base import ItemSource
from shared.jobstore import utc_now
from shared.transfer import TransferResult, discard_transfer, transfer_to_blob, transfer_to_put

__all__ = [
    "Cancelled",
    "PartProgress",
    "blob_container",
    "check_destination",
    "deliver",
    "put_destination",
    "secret",
]


_RECORD_PROGRESS_S: Final = 2.0  # write an item's bytes at most this often


class Cancelled(Exception):
    """The job was cancelled while an item moved: stop it where it is."""


@dataclass
class PartProgress:
    """Writes an item's bytes to its part now and then, and stops the transfer (`Cancelled`)
    when its job is cancelled."""

    deps: Deps
    job_id: str
    part: str
    base: Mapping[str, Any]
    last: float = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < _RECORD_PROGRESS_S:
            return
        self.last = now
        if self.deps.jobs.cancel_requested(self.job_id):
            raise Cancelled
        self.deps.jobs.put_part(
            self.job_id, self.part, {**self.base, "bytes_done": done, "updated": utc_now()}
        )


def secret(deps: Deps, name: str | None) -> str | None:
    return deps.secrets.get(name) if name else None


def put_destination(spec: PutDestinationSpec, deps: Deps) -> HttpPutDestination:
    return HttpPutDestination(spec, deps.http, secret(deps, spec.secret_name))


def blob_container(spec: BlobDestinationSpec, deps: Deps) -> Any:
    given = secret(deps, spec.secret_name)
    policy = deps.settings.destination_policy
    policy.check(given, spec.container)  # DestinationRefused: permanent
    # Another account's client checks the outbound policy again at every connection it opens.
    connection = given or deps.settings.export_storage_connection
    return container_client(connection, spec.container, outbound=policy.outbound_for(given))


def check_destination(spec: BlobDestinationSpec | PutDestinationSpec, deps: Deps) -> None:
    """The destination answers (a Blob container exists); PermanentError or TransientError if not."""
    if isinstance(spec, PutDestinationSpec):
        put_destination(spec, deps).check_connection()
        return
    from shared.destinations.blob import BlobDestination

    given = secret(deps, spec.secret_name)
    policy = deps.settings.destination_policy
    policy.check(given, spec.container)
    connection = given or deps.settings.export_storage_connection
    outbound = policy.outbound_for(given)
    BlobDestination.connect(
        connection, spec.container, spec.path_prefix, outbound=outbound
    ).check_connection()


def deliver(
    source: ItemSource,
    item: str,
    destination: BlobDestinationSpec | PutDestinationSpec,
    deps: Deps,
    *,
    values: Mapping[str, str],
    blob_path: str,
    job_id: str,
    progress: Callable[[int], None],
) -> tuple[TransferResult, str]:
    """Move `item`; its result and where it went (a URL without query). `values` fill a PUT URL
    template; `blob_path` is its name below a Blob destination's prefix."""
    if isinstance(destination, PutDestinationSpec):
        put = put_destination(destination, deps)
        url = destination.url_for(values)
        try:
            return transfer_to_put(source, item, functools.partial(put.put, url), progress=progress), url
        except Cancelled:
            put.delete(url)  # a partial upload may be left by the server (wsgidav keeps them)
            raise
    container = blob_container(destination, deps)
    blob_name = destination.blob_name(blob_path)
    try:
        result = transfer_to_blob(source, item, container, blob_name, job_id=job_id, progress=progress)
    except Cancelled:
        discard_transfer(container, blob_name, job_id=job_id)
        raise
    return result, container.get_blob_client(blob_name).url.split("?", 1)[0]
