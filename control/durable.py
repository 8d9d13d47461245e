"""The job flows that need the durable client: start, cancel, and reconcile a job with its orchestration.

One place for them, so every entry point (the job API, the FHIR front door, the reconciler timer)
starts, cancels and settles jobs the same way. The decisions live in `shared` (`job_api`,
`reconcile_plan`); this module only carries the durable client's answers to them and back.
Blocking work (job records, secrets, storage) runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

import azure.durable_functions as df

from shared import job_api, telemetry
from shared.callers import TRUSTED, Caller
from shared.deps import Deps
from shared.export_tasks import CANCEL_EVENT
from shared.jobstore import JobView
from shared.reconcile_plan import RuntimeStatus
from shared.session_tasks import SESSION_ORCHESTRATOR, WAKE_EVENT
from shared.sessions import Opened

__all__ = [
    "StartFailed",
    "cancel",
    "reconcile",
    "reconcile_active",
    "reconciled_view",
    "run_session",
    "runtime_status",
    "start",
]

log = logging.getLogger(__name__)


_RUNNING: Final = frozenset({"Running", "Pending", "ContinuedAsNew", "Suspended"})
_DYING_WAIT_S: Final = 0.25  # an ended run's instance completes within moments of its record
_DYING_TRIES: Final = 120


class StartFailed(Exception):
    """The orchestration could not be started; the job was recorded as failed and its secrets dropped."""


async def start(client: df.DurableOrchestrationClient, submitted: job_api.Submitted, deps: Deps) -> None:
    """Start the job's orchestration. A retry reuses the job's instance id, and the failed run's
    instance may still be completing (it records the end before it returns): it is given a
    moment to complete, as the runtime refuses to replace a running instance."""
    job_id, wanted = submitted.job.job_id, submitted.job
    telemetry.tag_job(job_id)
    failure: Exception | None = None
    for _ in range(_DYING_TRIES):
        try:
            await client.start_new(submitted.orchestrator, job_id, wanted.to_dict())
            return
        except Exception as exc:  # noqa: BLE001 - judged below by what the runtime now says
            failure = exc
        try:
            running = await _running_run(client, job_id)
        except Exception:  # noqa: BLE001 - the runtime does not answer: the start failed
            break
        if running is None:
            break
        if running >= wanted.run:  # it started after all (an answer lost on the way back)
            return
        await asyncio.sleep(_DYING_WAIT_S)
    log.error("job %s: could not start the orchestration", job_id, exc_info=failure)
    await asyncio.to_thread(job_api.abandon, submitted, deps, "the export could not be started")
    raise StartFailed(job_id) from failure


async def _running_run(client: df.DurableOrchestrationClient, job_id: str) -> int | None:
    """The run number of the job's instance while it runs; None when it does not run. Raises
    when the runtime does not answer."""
    try:
        status = await client.get_status(job_id)
    except TypeError:  # the SDK cannot build a status from a 404 without a body
        return None
    if getattr(status.runtime_status, "value", status.runtime_status) not in _RUNNING:
        return None
    current = _input(status.input_)
    return int(current.get("run", 0)) if current is not None else 0


async def runtime_status(client: df.DurableOrchestrationClient, job_id: str) -> RuntimeStatus:
    """What the runtime says of the job's orchestration (status None: there is no such instance)."""
    try:
        status = await client.get_status(job_id)
    except TypeError:  # the SDK cannot build a status from a 404 without a body
        return RuntimeStatus(None)
    runtime = getattr(status, "runtime_status", None)
    if runtime is None:
        return RuntimeStatus(None)
    name = runtime.value if hasattr(runtime, "value") else str(runtime)
    return RuntimeStatus(name, status.output, status.last_updated_time)


async def reconcile(client: df.DurableOrchestrationClient, view: JobView, deps: Deps) -> bool:
    """Give a job whose orchestration ended (or hangs) without recording it the end it had.

    True when the record was changed. A hung orchestration is terminated first, so the job's
    end is recorded by exactly one writer."""
    job_id = str(view.record["id"])
    telemetry.tag_job(job_id)
    runtime = await runtime_status(client, job_id)
    verdict = job_api.judge(view, runtime, deps)
    if verdict is None:
        return False
    if verdict.terminate:
        try:
            await client.terminate(job_id, verdict.reason or "cancelled")
        except Exception:  # noqa: BLE001 - it may have ended meanwhile; the record is settled anyway
            log.warning("job %s: could not terminate its orchestration", job_id, exc_info=True)
    log.warning("job %s: orchestration is %s; recording it %s: %s", job_id, runtime.status,
                verdict.state.value, verdict.reason)  # fmt: skip
    await asyncio.to_thread(job_api.settle, view, verdict, deps)
    return True


async def reconciled_view(
    client: df.DurableOrchestrationClient, job_id: str, deps: Deps, caller: Caller = TRUSTED
) -> JobView | None:
    """The job's view after reconciling it when it is not terminal (the check costs one status
    call); None when there is no such job the caller may see."""
    view = await asyncio.to_thread(job_api.find, job_id, deps, caller)
    if view is None or job_api.is_ended(view):
        return view
    if await reconcile(client, view, deps):
        return await asyncio.to_thread(deps.jobs.view, job_id)
    return view


async def cancel(
    client: df.DurableOrchestrationClient, job_id: str, deps: Deps, caller: Caller = TRUSTED
) -> JobView | None:
    """Cancel a job in any non-terminal state; None if there is no such job the caller may see
    (`callers.Forbidden` if it may see but not cancel it).

    The marker is written first (the work stops at its next page even if the event is lost),
    then the event wakes an orchestration that waits (a retry backoff); a job whose orchestration
    is gone is settled as cancelled at once."""
    telemetry.tag_job(job_id)
    view = await asyncio.to_thread(job_api.mark_cancel, job_id, deps, caller)
    if view is None or job_api.is_ended(view):
        return view
    # The job's instance and its parts' (one of them may be waiting out a retry backoff).
    for instance_id in [job_id, *job_api.part_instances(view)]:
        try:
            await client.raise_event(instance_id, CANCEL_EVENT, None)
        except Exception:  # noqa: BLE001 - gone or not started: the marker and the reconcile cover it
            log.debug("job %s: cancel event not delivered to %s", job_id, instance_id)
    if await reconcile(client, view, deps):
        return await asyncio.to_thread(deps.jobs.view, job_id)
    return view


async def reconcile_active(client: df.DurableOrchestrationClient, deps: Deps, limit: int) -> int:
    """Reconcile up to `limit` jobs that have not ended; the number settled."""
    settled = 0
    for job_id in await asyncio.to_thread(job_api.active_jobs, deps, limit):
        view = await asyncio.to_thread(job_api.find, job_id, deps)
        if view is not None and not job_api.is_ended(view) and await reconcile(client, view, deps):
            settled += 1
    return settled


async def run_session(client: df.DurableOrchestrationClient, opened: Opened) -> None:
    """Make sure the session's orchestration runs `opened.input`'s run, and wake it.

    A running execution of that run (or a later one) is woken; with none, one is started (a
    trigger that loses the race to start it wakes the winner). When the job had ended, the
    instance of its last run may still be finishing: it is given a moment to complete, then the
    next run starts. Raises when the runtime does not answer, so the trigger tries again."""
    job_id, wanted = opened.job_id, opened.input
    telemetry.tag_job(job_id)
    for _ in range(_DYING_TRIES):
        running = await _running_run(client, job_id)
        if running is not None:
            if running >= wanted.run:
                await client.raise_event(job_id, WAKE_EVENT, None)
                return
            await asyncio.sleep(_DYING_WAIT_S)  # the ended run is completing
            continue
        try:
            await client.start_new(SESSION_ORCHESTRATOR, job_id, wanted.to_dict())
            return
        except Exception:  # noqa: BLE001 - another trigger started it first: look again
            log.debug("session %s: start lost a race; looking again", job_id)
    raise RuntimeError(f"session {job_id}: its orchestration neither runs nor starts")


def _input(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None
