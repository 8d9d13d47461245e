"""What the batch API does, framework-free: submit, present, retry and settle batches.

Submission validates the request (a `ValidationError` names the field: `items[3]`,
`destination.url_template`, ...), checks every item name against its source (a local path
outside the root, a URL the outbound policy refuses), moves the secret values into the secret
store under per-job names, and writes the record as `queued` with the items, before the
orchestration starts. A batch's status lists each item with its state, bytes and reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from shared.admitting import check_room
from shared.batch_contracts import BatchRequest, item_values, parse_batch_request
from shared.batch_tasks import BATCH_ORCHESTRATOR, BatchInput, Counts, item_instance_id
from shared.batching import FinishBatch, finish, part_name
from shared.callers import TRUSTED, Caller
from shared.deps import Deps
from shared.destination_claims import KEY_FIELD
from shared.destinations.http_put import PutDestinationSpec
from shared.errors import ValidationError
from shared.items.base import validate_items
from shared.items.factory import make_item_source
from shared.jobs import JobState
from shared.jobstore import JobKind, JobView, new_record, utc_now
from shared.reconcile_plan import Verdict
from shared.storage_policy import DestinationRefused

if TYPE_CHECKING:  # job_api imports this module lazily; the names flow one way at run time
    from shared.job_api import Submitted

__all__ = ["ITEMS_SHOWN", "part_instances", "present", "retry", "settle", "submit"]

ITEMS_SHOWN: Final = 1000  # items in one status answer; `items_offset` pages through the rest
_PART_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled", "skipped"})


def submit(body: Any, deps: Deps, *, job_id: str | None = None, caller: Caller = TRUSTED) -> Submitted:
    from shared.job_api import (  # noqa: F811 - at run time: job_api imports this module
        ORIGIN_API,
        Submitted,
        as_caller,
        check_blob_destination,
        check_outbound,
        claim_destination,
    )

    body = as_caller(body, caller, ORIGIN_API)
    job_id = job_id or uuid.uuid4().hex
    request, items, secrets = parse_batch_request(
        body, job_id=job_id, default_container=deps.settings.default_container
    )
    if request.source.kind == "local" and deps.settings.batch_local_root is None:
        raise ValidationError("source.kind", "local files are not offered here (BATCH_LOCAL_ROOT is not set)")
    source = make_item_source(
        request.source.kind,
        container=request.source.container,
        storage_connection=deps.settings.export_storage_connection,
        http_client=deps.http,
        local_root=deps.settings.batch_local_root,
    )  # built for its name checks only: no I/O here
    validate_items(source, items)
    if request.source.kind == "url":
        for i, item in enumerate(items):
            check_outbound(deps, item, f"items[{i}]")
    if isinstance(request.destination, PutDestinationSpec):
        check_outbound(deps, request.destination.base_url, "destination.base_url")
        known = {"base", *dict(request.labels), *item_values("x", 0, request.source.kind)}
        unknown = [p for p in request.destination.placeholders() if p not in known]
        if unknown:
            raise ValidationError(
                "destination.url_template",
                f"{{{unknown[0]}}} is neither an item value (path, name, index) nor a label of the batch",
            )
        for i, item in enumerate(items):  # every URL can be made: no `..`, no escape from base_url
            try:
                request.destination.url_for(
                    {**dict(request.labels), **item_values(item, i, request.source.kind)}
                )
            except ValidationError as exc:
                raise ValidationError(f"items[{i}]", exc.detail) from None
    check_blob_destination(deps, request.destination, secrets.get(request.destination.secret_name or ""))
    if request.source.kind == "blob" and request.source.container is not None:
        try:
            given = secrets.get(request.source.secret_name or "")
            deps.settings.destination_policy.check(
                given, request.source.container, reading=True, confined=not caller.sees_all
            )
        except DestinationRefused as exc:
            raise ValidationError(f"source.{exc.part}", str(exc)) from None
    check_room(deps, request.requested_by)
    key = claim_destination(deps, request.destination, secrets.get(request.destination.secret_name or ""),
                            dict(request.labels), share=request.options.share_destination)  # fmt: skip
    for name, value in secrets.items():
        deps.secrets.set(name, value)
    record = new_record(
        job_id,
        JobKind.BATCH,
        request.to_dict(),
        request.requested_by,
        dict(request.labels),
        items=list(items),
        origin=ORIGIN_API,
        **{KEY_FIELD: key},
    )
    deps.jobs.put_record(record)
    return Submitted(BatchInput(job_id=job_id, request=request, waits_turn=True), record, BATCH_ORCHESTRATOR)


def present(view: JobView, *, offset: int = 0, limit: int = ITEMS_SHOWN) -> dict[str, Any]:
    """The status document of a batch: counts, bytes, and items `offset`..`offset+limit`."""
    record = view.record
    items: list[str] = list(record.get("items") or [])
    ended = record["state"] in ("succeeded", "failed", "cancelled")
    counts: dict[str, int] = {}
    done = total = 0
    shown: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        progress = view.parts.get(part_name(index)) or {}
        state = str(progress.get("state") or ("cancelled" if ended else "queued"))
        counts[state] = counts.get(state, 0) + 1
        done += int(progress.get("bytes_done") or 0)
        total += int(progress.get("bytes_total") or 0)
        if offset <= index < offset + limit:
            shown.append({
                "index": index,
                "item": item,
                "state": state,
                "bytes_done": int(progress.get("bytes_done") or 0),
                "bytes_total": progress.get("bytes_total"),
                "attempts": int(progress.get("attempts") or 0),
                "last_error": progress.get("last_error") or (None if progress or not ended else "not started"),
                "destination": progress.get("destination"),
            })  # fmt: skip
    state = record["state"]
    if state == JobState.RUNNING.value and counts.get("retrying"):
        state = JobState.RETRYING.value
    from shared.job_api import status_header

    return {
        **status_header(view, state),
        "counts": {"items": len(items), **counts},
        "bytes": {"done": done, "total": total},
        "attempts": record.get("attempts", 0),
        "last_error": record.get("last_error"),
        "items": shown,
        "items_offset": offset,
        "items_more": offset + limit < len(items),
    }


def settle(view: JobView, verdict: Verdict, deps: Deps) -> None:
    """The reconciler's verdict on a batch, recorded by the batch's own end."""
    request = BatchRequest.from_dict(view.record["request"])
    counts = Counts(
        succeeded=sum(1 for p in view.parts.values() if p.get("state") == "succeeded"),
        failed=sum(1 for p in view.parts.values() if p.get("state") == "failed"),
        bytes=sum(
            int(p.get("bytes_done") or 0) for p in view.parts.values() if p.get("state") == "succeeded"
        ),
    )
    finish(FinishBatch(str(view.record["id"]), request, verdict.state.value, counts, verdict.reason), deps)


def retry(view: JobView, body: Any, deps: Deps) -> Submitted:
    """Re-run the items that did not succeed (the caller checked the batch failed). The batch's
    secrets were deleted when it ended; a batch that had them needs them again in `body`:
    `{"source": {"secret": ...}, "destination": {"secret": ...}}`."""
    from shared._strict import replace
    from shared.job_api import Submitted, requeue  # noqa: F811 - at run time
    from shared.secrets.base import ROLE_DESTINATION, new_secret_name

    job_id = str(view.record["id"])
    request = BatchRequest.from_dict(view.record["request"])
    body = body if body is not None else {}
    if not isinstance(body, Mapping) or set(body) - {"source", "destination"}:
        raise ValidationError("body", "may only give source.secret and destination.secret")
    source, destination = request.source, request.destination
    if source.secret_name:
        source = replace(
            source, secret_name=_secret_again(body, "source", new_secret_name(job_id, "source"), deps)
        )
    if destination.secret_name:
        name = _secret_again(body, "destination", new_secret_name(job_id, ROLE_DESTINATION), deps)
        destination = replace(destination, secret_name=name)
    request = replace(request, source=source, destination=destination)
    for name, progress in view.parts.items():
        if progress.get("state") not in ("succeeded",) and progress.get("state") in _PART_TERMINAL:
            deps.jobs.put_part(
                job_id, name, {**progress, "state": "queued", "last_error": None, "updated": utc_now()}
            )
    requeued = requeue(view.record, request.to_dict(), deps)
    return Submitted(
        BatchInput(job_id=job_id, request=request, run=requeued["run"], waits_turn=True),
        requeued,
        BATCH_ORCHESTRATOR,
    )


def _secret_again(body: Mapping[str, Any], section: str, name: str, deps: Deps) -> str:
    part = body.get(section) or {}
    value = part.get("secret") if isinstance(part, Mapping) else None
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"{section}.secret", "this batch's secret was deleted when it ended; send it again"
        )
    deps.secrets.set(name, value)
    return name


def part_instances(view: JobView) -> list[str]:
    """The item orchestrations a cancel event should reach: those under way (at most the
    batch's concurrency)."""
    run = int(view.record.get("run", 0))
    busy = [p for p in view.parts.values() if p.get("state") in ("transferring", "retrying")]
    return [item_instance_id(str(view.record["id"]), int(p["index"]), run) for p in busy if "index" in p]
