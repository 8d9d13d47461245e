"""The reconciler timer: every few minutes, give each job whose orchestration ended without
recording it (failed, terminated, purged) or hangs past `JOB_STALL_MINUTES` the end it had.

Reads also reconcile (`control.durable.reconciled_view`), so a user never waits for this timer
to see the truth; the timer covers jobs nobody looks at, so that every job reaches a terminal state.
It also re-indexes open-job rows left behind by their record (`shared.admitting.heal_open_index`),
so an ended job never holds a place under the caps on running jobs.
"""

from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func

from control import durable
from shared import admitting
from shared.deps import get_deps

bp = df.Blueprint()
log = logging.getLogger(__name__)

SCHEDULE = "0 */5 * * * *"  # NCRONTAB: every 5 minutes, far below the default stall deadline
MAX_JOBS_PER_RUN = 1000  # bounds one run; the rest wait for the next


@bp.timer_trigger(schedule=SCHEDULE, arg_name="timer", run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def reconcile_jobs(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    deps = get_deps()
    settled = await durable.reconcile_active(client, deps, MAX_JOBS_PER_RUN)
    if settled:
        log.warning("reconciler: %d job(s) settled after their orchestration ended unrecorded", settled)
    healed = await asyncio.to_thread(admitting.heal_open_index, deps)
    if healed:
        log.warning("reconciler: %d open-job row(s) indexed again from their records", healed)
