"""What a batch can be made of, for the submit page's file picker (function key).

    GET /api/sources/blob?container=&prefix=&recursive=&limit=&continuation=
        folders and files under a prefix of a container of the service's storage
    GET /api/sources/local?path=&recursive=&limit=&continuation=
        folders and files of a folder under BATCH_LOCAL_ROOT (404 naming `path` when not offered)

Both answer `{"source", ..., "entries": [{"name", "kind": "file"|"folder", "size",
"content_type"}], "continuation"}`; 400 names the query field. Thin adapters over
`shared.source_listing`; errors are the job API's (`http_api.exports`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import azure.durable_functions as df
import azure.functions as func
from azure.storage.blob import ContainerClient

from http_api.callers import caller_of
from http_api.exports import error, guarded, json_answer
from shared import source_listing
from shared.callers import Forbidden
from shared.deps import get_deps
from shared.destinations.blob import container_client

bp = df.Blueprint()


async def _listed(list_it: Callable[[], source_listing.Listing]) -> func.HttpResponse:
    try:
        listing = await asyncio.to_thread(list_it)
    except source_listing.SourceNotFound as exc:
        return error(404, "not_found", str(exc), exc.field)
    return json_answer(listing.to_dict())


@bp.route(route="sources/blob", methods=["GET"])
async def list_blob_source(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        deps = get_deps()
        caller = caller_of(req, deps)
        connection = deps.settings.export_storage_connection
        container = req.params.get("container") or ""
        if not caller.sees_all and deps.settings.destination_policy.holds_exports(container):
            raise Forbidden(f"container {container!r} holds the exports of every user; only operators list it",
                            "container")  # fmt: skip

        def container_of(name: str) -> ContainerClient:
            return container_client(connection, name)

        return await _listed(lambda: source_listing.list_blob(dict(req.params), container_of))

    return await guarded(run)


@bp.route(route="sources/local", methods=["GET"])
async def list_local_source(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        deps = get_deps()
        caller_of(req, deps)
        root = deps.settings.batch_local_root
        return await _listed(lambda: source_listing.list_local(dict(req.params), root))

    return await guarded(run)
