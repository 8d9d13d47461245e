"""The triggers that start sessions' auto-export: the session-completed queue and new generated data.

- queue `session-completed`: `{"session_id", "study_id", "app", "prefix"}` (or `"items"`, paths
  below the session's folder; optional `"requested_by"`). A malformed message is moved to
  `session-completed-poison` at once with the reason logged (retrying it cannot help); a failure
  to reach storage raises, so the queue retries it (and poisons it after maxDequeueCount).
- blob `%GENERATED_DATA_CONTAINER%/{name}` (`{app}/{session}/{path}`): a new or changed blob
  (an Event Grid subscription in Azure, made by infra/hooks/postdeploy.sh).

Both call `shared.sessions` and then `control.durable.run_session`: every way in opens a
session's job the same way. The blob's bytes are not read here (the activity streams them).
"""

from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func

from control.durable import run_session
from shared import sessions
from shared.deps import get_deps
from shared.errors import ValidationError

bp = df.Blueprint()
log = logging.getLogger(__name__)

COMPLETED_QUEUE = "session-completed"
POISON_QUEUE = f"{COMPLETED_QUEUE}-poison"
CONNECTION = "AzureWebJobsStorage"


@bp.queue_trigger(arg_name="message", queue_name=COMPLETED_QUEUE, connection=CONNECTION)
@bp.queue_output(arg_name="poison", queue_name=POISON_QUEUE, connection=CONNECTION)
@bp.durable_client_input(client_name="client")
async def session_completed(
    message: func.QueueMessage, poison: func.Out[str], client: df.DurableOrchestrationClient
) -> None:
    body = message.get_body()
    try:
        completed = sessions.parse_completion(body)
    except ValidationError as exc:
        log.error("session-completed message %s moved to %s: %s", message.id, POISON_QUEUE, exc)
        poison.set(body.decode("utf-8", "replace"))
        return
    deps = get_deps()
    opened = await asyncio.to_thread(sessions.session_completed, completed, deps)
    if opened is not None:
        await run_session(client, opened)


# Event Grid in Azure: new blobs arrive within seconds (the polling scan may lag minutes on an
# idle app, and Flex Consumption refuses it); the self-hosted runtime scans the container.
@bp.blob_trigger(
    arg_name="blob",
    path="%GENERATED_DATA_CONTAINER%/{name}",
    connection=CONNECTION,
    source=func.BlobSource.EVENT_GRID,
)
@bp.durable_client_input(client_name="client")
async def generated_data(blob: func.InputStream, client: df.DurableOrchestrationClient) -> None:
    container_and_name = blob.name or ""
    name = container_and_name.split("/", 1)[1] if "/" in container_and_name else container_and_name
    properties = getattr(blob, "blob_properties", None) or {}  # set by the host, not typed by the library
    etag = str(properties.get("ETag") or "")
    opened = await asyncio.to_thread(sessions.blob_arrived, name, etag, get_deps())
    if opened is not None:
        await run_session(client, opened)
