"""`StagedPutDestination`: an export's files to an HTTP PUT server, each PUT once, whole.

A PUT cannot append, and an export commits a file every few pages. So pages are staged as
blocks of a blob in the service's own storage (container `export-work`, `jobs/{job}/put/{file}`),
each commit commits that staging blob (cheap, idempotent), and only when a file is complete (it
rolled over, or its type is done) does `publish` stream the staging blob to the PUT server in one
request and delete it. A crash between the commit and the PUT re-runs the commit activity, which
publishes again: a PUT replaces the whole file, so the server ends with exactly the file's bytes.

The PUT URL comes from the destination's template with `{name}` (e.g. `Patient-1.ndjson`),
`{type}` and the job's labels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings

from shared.destinations.base import NDJSON_CONTENT_TYPE
from shared.destinations.blob import storage_errors
from shared.destinations.http_put import HttpPutDestination

__all__ = ["StagedPutDestination"]

_NDJSON = ContentSettings(content_type=NDJSON_CONTENT_TYPE)


class _Chunks:
    """A blob's chunks as a file-like body (`read`) and an iterator, for the PUT client."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def __iter__(self) -> Iterator[bytes]:
        if self._rest:
            yield self._rest
            self._rest = b""
        yield from self._chunks

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._rest) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._rest += chunk
        if size < 0:
            data, self._rest = self._rest, b""
        else:
            data, self._rest = self._rest[:size], self._rest[size:]
        return data


class StagedPutDestination:
    def __init__(
        self, put: HttpPutDestination, staging: ContainerClient, job_id: str, labels: Mapping[str, str]
    ) -> None:
        self._put = put
        self._staging = staging
        self._job_id = job_id
        self._labels = dict(labels)

    def _staged(self, file_name: str) -> str:
        return f"jobs/{self._job_id}/put/{file_name}"

    def url(self, file_name: str) -> str:
        resource_type = file_name.rsplit("-", 1)[0]
        return self._put.spec.url_for({**self._labels, "name": file_name, "type": resource_type})

    def check_connection(self) -> None:
        self._put.check_connection()
        with (
            storage_errors("create container", self._staging.container_name),
            contextlib.suppress(ResourceExistsError),
        ):
            self._staging.create_container()

    def stage(self, file_name: str, block_id: str, data: bytes) -> None:
        blob = self._staging.get_blob_client(self._staged(file_name))
        with storage_errors("stage block", file_name):
            blob.stage_block(block_id, data, length=len(data), validate_content=True)

    def commit(self, file_name: str, block_ids: Sequence[str], metadata: Mapping[str, str]) -> None:
        blob = self._staging.get_blob_client(self._staged(file_name))
        with storage_errors("commit staged file", file_name):
            blob.commit_block_list([BlobBlock(block_id=b) for b in block_ids], metadata=dict(metadata),
                                   content_settings=_NDJSON)  # fmt: skip

    def publish(self, file_name: str) -> None:
        """PUT the complete file, whole, then drop its staging blob."""
        blob = self._staging.get_blob_client(self._staged(file_name))
        with storage_errors("read staged file", file_name):
            download = blob.download_blob()
            size = int(download.properties.size)
            body = _Chunks(iter(download.chunks()))
        self._put.put(self.url(file_name), body, size, NDJSON_CONTENT_TYPE)
        with storage_errors("delete staged file", file_name), contextlib.suppress(ResourceNotFoundError):
            blob.delete_blob()

    def delete(self, file_names: Iterable[str]) -> None:
        for name in file_names:
            with storage_errors("delete staged file", name), contextlib.suppress(ResourceNotFoundError):
                self._staging.get_blob_client(self._staged(name)).delete_blob()
            self._put.delete(self.url(name))
