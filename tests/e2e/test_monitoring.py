"""End to end: GET /api/health and GET /api/metrics of the runtime running function_app.py, with
the SMTP server down (nothing listens on SMTP_PORT). Health names every check and stays 200
(mail only degrades the service); the metrics parse as Prometheus text and count a finished
batch, a batch waiting out a retry, the requests that made them and the mail that waits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.azurite import Azurite
from tests.support.export_env import TERMINAL, ExportClient, start_service
from tests.support.fhir_server import FhirTestServer
from tests.support.ports import free_port
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until
from tests.support.webdav_server import WebDavTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SCRAPE_TIMEOUT = 60  # the store figures are cached for 15 s per process


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 1}) as server:  # the service wants a default source; unused here
        yield server


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    mail = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port()), "SMTP_SECURITY": "none",
            "MAIL_FROM": "bulk-export@example.com"}  # fmt: skip
    rt = start_service(azurite, fhir, tmp_path_factory.mktemp("monitoring"), **mail)
    try:
        yield rt
    finally:
        rt.stop()


def scrape(client: ExportClient) -> Samples:
    r = client.http.get(client.rt.url("api/metrics"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(found: Samples, metric: str, **labels: str) -> float:
    return found.get((metric, frozenset(labels.items())), 0.0)


def upload(azurite: Azurite, container: str, files: dict[str, bytes]) -> None:
    with ContainerClient.from_connection_string(azurite.connection_string, container) as c:
        if not c.exists():
            c.create_container()
        for name, data in files.items():
            c.upload_blob(name, data, overwrite=True)


def start_batch(client: ExportClient, body: dict[str, Any]) -> str:
    r = client.http.post(client.rt.url("api/batches"), json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def batch_state(client: ExportClient, job_id: str) -> dict[str, Any]:
    r = client.http.get(client.rt.url(f"api/batches/{job_id}"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_health_names_every_check_and_smtp_down_only_degrades(service: RuntimeProcess) -> None:
    r = httpx.get(service.url("api/health"), timeout=30)  # anonymous: no key

    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == {
        "status": "degraded",
        "checks": {"runtime": "ok", "settings": "ok", "storage": "ok", "durable": "ok", "secrets": "ok",
                   "smtp": "error: connection refused"},
    }  # fmt: skip


def test_metrics_need_the_function_key(service: RuntimeProcess) -> None:
    assert httpx.get(service.url("api/metrics"), timeout=30).status_code == 401


def test_metrics_count_a_finished_batch_its_requests_and_its_waiting_mail(
    client: ExportClient, azurite: Azurite
) -> None:
    files = {f"m/scan-{i}.dcm": bytes([i]) * (1000 + i) for i in range(3)}
    upload(azurite, "monitored", files)
    job = start_batch(client, {
        "source": {"kind": "blob", "container": "monitored"}, "items": list(files),
        "destination": {"kind": "blob", "container": "monitored-out", "path_prefix": "out"},
        "requested_by": "tech@example.com",
    })  # fmt: skip
    final = wait_until(
        lambda: (st := batch_state(client, job))["state"] in TERMINAL and st, timeout=90, interval=0.2,
        message=f"batch {job} to end",
    )  # fmt: skip
    assert final["state"] == "succeeded", final

    def counted() -> Samples | None:
        found = scrape(client)
        return found if value(found, "bulk_export_jobs", kind="batch", state="succeeded") >= 1 else None

    found = wait_until(counted, timeout=SCRAPE_TIMEOUT, interval=1, message="the batch in bulk_export_jobs")

    assert value(found, "bulk_export_job_store_up") == 1
    assert value(found, "bulk_export_outbox_up") == 1
    assert value(found, "bulk_export_durable_up") == 1
    assert value(found, "bulk_export_job_metrics_capped") == 0
    assert value(found, "bulk_export_http_requests_total", function="submit_batch", status="202") >= 1
    assert value(found, "bulk_export_http_requests_total", function="get_batch", status="200") >= 1
    assert value(found, "bulk_export_http_request_duration_seconds_count", function="get_batch") >= 1
    # The submitter's success mail cannot be sent (no SMTP server): it waits in the outbox.
    waiting = wait_until(
        lambda: (lambda f: value(f, "bulk_export_mail_backlog", state="pending")
                 + value(f, "bulk_export_mail_backlog", state="sending"))(scrape(client)),
        timeout=SCRAPE_TIMEOUT, interval=1, message="the batch's mail in the backlog",
    )  # fmt: skip
    assert waiting >= 1
    # A scrape is counted once answered: the next one shows the earlier ones.
    assert value(scrape(client), "bulk_export_http_requests_total", function="metrics", status="200") >= 1


def test_metrics_show_a_batch_waiting_out_a_retry(client: ExportClient, azurite: Azurite) -> None:
    upload(azurite, "monitored", {"r/scan.dcm": b"x" * 2048})
    with WebDavTestServer() as dav:
        dav.fail("/dav/r/scan.dcm", 503, times=None, method="PUT")  # transient: retried after a wait
        job = start_batch(client, {
            "source": {"kind": "blob", "container": "monitored"}, "items": ["r/scan.dcm"],
            "destination": {"kind": "http_put", "base_url": dav.base_url, "url_template": "{base}/{path}",
                            "create_parents": True},
            "options": {"retry": {"first_retry_interval_ms": 120_000, "max_attempts": 3}},
            "requested_by": "tech@example.com",
        })  # fmt: skip
        try:
            wait_until(
                lambda: batch_state(client, job)["state"] == "retrying", timeout=60, message="retrying"
            )

            def running(found: Samples) -> float:
                return sum(v for (name, labels), v in found.items()
                           if name == "bulk_export_orchestrations" and ("status", "Running") in labels)  # fmt: skip

            def retrying() -> Samples | None:
                # Each source is cached on its own (15 s): wait until both show the waiting batch.
                found = scrape(client)
                parts = value(found, "bulk_export_retrying_parts", kind="batch")
                items = value(found, "bulk_export_orchestrations", name="batch_item", status="Running")
                return found if parts >= 1 and running(found) >= 1 and items >= 1 else None

            found = wait_until(retrying, timeout=SCRAPE_TIMEOUT, interval=1, message="the batch waiting")
            active = sum(
                value(found, "bulk_export_active_jobs", kind="batch", state=s)
                for s in ("running", "retrying")
            )
            assert active >= 1
            assert value(found, "bulk_export_active_job_parts", kind="batch", state="retrying") >= 1
            assert value(found, "bulk_export_orchestrations", name="batch_item", status="Running") >= 1
        finally:
            assert client.http.delete(client.rt.url(f"api/batches/{job}")).status_code == 202
        ended = wait_until(
            lambda: (st := batch_state(client, job))["state"] in TERMINAL and st, timeout=60, interval=0.2,
            message="cancelled",
        )  # fmt: skip
    assert ended["state"] == "cancelled", ended
