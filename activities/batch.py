"""Activities of a batch: each decodes its contract, calls one function of shared.batching, and
encodes the answer. Transient errors propagate so the item orchestration retries them."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from shared import batching
from shared.batch_tasks import (
    FINISH_ACTIVITY,
    NEXT_ACTIVITY,
    PREPARE_ACTIVITY,
    TRANSFER_ACTIVITY,
    BatchInput,
    ItemInput,
)
from shared.deps import get_deps
from shared.telemetry import traced_activity

bp = df.Blueprint()


@bp.activity_trigger(input_name="job", activity=PREPARE_ACTIVITY)
@traced_activity
def batch_prepare(job: dict[str, Any]) -> dict[str, Any]:
    return batching.prepare(BatchInput.from_dict(job), get_deps()).to_dict()


@bp.activity_trigger(input_name="job", activity=NEXT_ACTIVITY)
@traced_activity
def batch_next(job: dict[str, Any]) -> dict[str, Any]:
    return batching.next_items(BatchInput.from_dict(job), get_deps()).to_dict()


@bp.activity_trigger(input_name="item", activity=TRANSFER_ACTIVITY)
@traced_activity
def batch_transfer(item: dict[str, Any]) -> dict[str, Any]:
    return batching.transfer(ItemInput.from_dict(item), get_deps()).to_dict()


@bp.activity_trigger(input_name="task", activity=FINISH_ACTIVITY)
@traced_activity
def batch_finish(task: dict[str, Any]) -> None:
    batching.finish(batching.FinishBatch.from_dict(task), get_deps())
