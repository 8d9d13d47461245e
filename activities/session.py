"""Activities of a session's auto-export: each decodes its contract, calls one function of
shared.session_export, and encodes the answer. Transient errors propagate so the item
orchestration retries them."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from shared import session_export
from shared.deps import get_deps
from shared.session_tasks import (
    FINISH_ACTIVITY,
    SCAN_ACTIVITY,
    TRANSFER_ACTIVITY,
    FinishSession,
    ScanTask,
    SessionItemInput,
)
from shared.telemetry import traced_activity

bp = df.Blueprint()


@bp.activity_trigger(input_name="task", activity=SCAN_ACTIVITY)
@traced_activity
def session_scan(task: dict[str, Any]) -> dict[str, Any]:
    return session_export.scan(ScanTask.from_dict(task), get_deps()).to_dict()


@bp.activity_trigger(input_name="item", activity=TRANSFER_ACTIVITY)
@traced_activity
def session_transfer(item: dict[str, Any]) -> dict[str, Any]:
    return session_export.transfer(SessionItemInput.from_dict(item), get_deps()).to_dict()


@bp.activity_trigger(input_name="task", activity=FINISH_ACTIVITY)
@traced_activity
def session_finish(task: dict[str, Any]) -> None:
    session_export.finish(FinishSession.from_dict(task), get_deps())
