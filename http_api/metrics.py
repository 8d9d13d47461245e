"""`GET /api/metrics`: the service's figures in the Prometheus text format (0.0.4), and the start-up
hook that sends traces and logs to Azure Monitor (`configure_telemetry`, called by function_app.py).

Function-key auth like the rest of the API: a scraper sends the key as the `x-functions-key`
header (or `?code=`), and is a caller like any other (`caller_of`: an identity when
REQUIRE_IDENTITY is set, within the rate limit). The figures (`shared.metrics`) come from the
job store and the outbox, cached per process for 15 s, and from the durable runtime (instances Pending or Running, one
query, cached alike); request counts and latencies are this process's (`shared.request_metrics`).
A source that cannot be read shows as its `bulk_export_*_up` gauge at 0, not as a failed scrape.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import Final

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from http_api.callers import caller_of
from http_api.exports import guarded
from shared import telemetry
from shared.deps import get_deps
from shared.metrics import Instances, ServiceMetrics, Ttl

bp = df.Blueprint()
log = logging.getLogger(__name__)

DURABLE_TIMEOUT_S: Final = 5.0
BACKLOG: Final = (OrchestrationRuntimeStatus.Pending, OrchestrationRuntimeStatus.Running)


def configure_telemetry() -> bool:
    """Traces and logs to Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set (once)."""
    return telemetry.configure(os.environ)


@functools.cache
def service_metrics() -> ServiceMetrics:
    """The process-wide collectors, over the process-wide job store and outbox."""
    deps = get_deps()
    return ServiceMetrics(deps.jobs, deps.outbox)


async def orchestration_backlog(
    client: df.DurableOrchestrationClient, cache: Ttl[Instances]
) -> Instances | None:
    """(name, runtime status) of every instance Pending or Running; None when the runtime does not answer."""
    cached = cache.get()
    if cached is not None:
        return cached
    try:
        found = await asyncio.wait_for(client.get_status_by(runtime_status=list(BACKLOG)), DURABLE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - the SDK raises a bare Exception for an unexpected answer
        log.warning("Metrics: the durable runtime did not list its instances (%s)", type(exc).__name__)
        return None
    instances = [
        (str(s.name or "unknown"), str(getattr(s.runtime_status, "value", s.runtime_status))) for s in found
    ]
    cache.put(instances)
    return instances


@bp.route(route="metrics", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def metrics(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def scrape() -> func.HttpResponse:
        caller_of(req)  # a scraper is a caller too: an identity when one is required, and a rate
        service = await asyncio.to_thread(service_metrics)
        instances = await orchestration_backlog(client, service.orchestrations)
        body = await asyncio.to_thread(service.render, instances)
        return func.HttpResponse(
            body,
            mimetype="text/plain; version=0.0.4",
            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, "Cache-Control": "no-store"},
        )

    return await guarded(scrape)
