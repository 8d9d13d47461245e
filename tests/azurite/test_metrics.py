"""shared.metrics against the Azure stores on Azurite: the job counts come from the listing
index (a creation window, a state filter), the mail backlog from the outbox's index rows."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.jobstore import AzureJobStore, JobKind, new_record
from shared.metrics import JobStoreCollector, MailBacklogCollector, render
from shared.outbox import OutboxEntry, OutboxState, TableOutbox
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite

# Far from every other test's jobs (they share Azurite's tables), so the window holds ours only.
NOW = dt.datetime(2031, 3, 4, 5, 0, tzinfo=dt.UTC)


def scraped(*collectors: object) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = render(collectors).decode()  # type: ignore[arg-type]
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def put_job(store: AzureJobStore, kind: JobKind, state: str, created: dt.datetime) -> str:
    job_id = uuid.uuid4().hex
    request = {"source": {"kind": "fhir", "types": ["Patient"]}} if kind is JobKind.FHIR_EXPORT else {}
    record = new_record(job_id, kind, request, "metrics@example.com", {}, items=["a.dcm"])
    store.put_record({**record, "state": state, "created": created.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return job_id


def test_job_counts_read_the_index_of_the_azure_store(azurite: Azurite) -> None:
    store = AzureJobStore.connect(azurite.connection_string)
    put_job(store, JobKind.FHIR_EXPORT, "succeeded", NOW - dt.timedelta(hours=1))
    put_job(store, JobKind.FHIR_EXPORT, "succeeded", NOW - dt.timedelta(hours=23))
    put_job(store, JobKind.BATCH, "failed", NOW - dt.timedelta(minutes=5))
    put_job(store, JobKind.BATCH, "succeeded", NOW - dt.timedelta(hours=25))  # outside the window
    running = put_job(store, JobKind.BATCH, "running", NOW - dt.timedelta(minutes=1))
    store.put_part(running, "item-00000", {"state": "retrying", "bytes_done": 123})

    found = scraped(JobStoreCollector(store, now=lambda: NOW))

    def value(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    assert value("bulk_export_jobs", kind="fhir-export", state="succeeded") == 2
    assert value("bulk_export_jobs", kind="batch", state="failed") == 1
    assert value("bulk_export_jobs", kind="batch", state="succeeded") is None
    assert value("bulk_export_jobs", kind="batch", state="running") == 1
    # Other tests' jobs share the index: ours are at least there.
    assert (value("bulk_export_active_jobs", kind="batch", state="running") or 0) >= 1
    assert (value("bulk_export_retrying_parts", kind="batch") or 0) >= 1
    assert (value("bulk_export_active_job_bytes", kind="batch") or 0) >= 123
    assert value("bulk_export_job_store_up") == 1


def test_mail_backlog_counts_the_outbox_index_rows(azurite: Azurite) -> None:
    outbox = TableOutbox.connect(azurite.connection_string, table=f"mail{uuid.uuid4().hex[:12]}")
    now = dt.datetime.now(dt.UTC)
    for n in range(3):
        key = f"job-{n}:0:submitter"
        outbox.add(OutboxEntry.new(key=key, job_id=f"job-{n}", to=["a@example.com"], subject="s",
                                   message="m", message_id=f"<{n}@example.com>", now=now))  # fmt: skip
    outbox.claim("job-0:0:submitter", now)
    outbox.mark_failed("job-0:0:submitter", now, "550 no such user", permanent=True, schedule=[30])

    assert outbox.count(OutboxState.PENDING, 10) == 2
    assert outbox.count(OutboxState.PENDING, 1) == 1
    assert outbox.count(OutboxState.DEAD, 10) == 1
    found = scraped(MailBacklogCollector(outbox))
    assert found[("bulk_export_mail_backlog", frozenset({("state", "pending")}))] == 2
    assert found[("bulk_export_mail_backlog", frozenset({("state", "sending")}))] == 0
    assert found[("bulk_export_mail_backlog", frozenset({("state", "dead")}))] == 1
