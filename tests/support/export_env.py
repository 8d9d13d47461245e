"""The whole export service for end-to-end tests: the runtime running the real function_app.py
against Azurite and a FHIR test server, plus helpers to submit, poll and validate exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from azure.storage.blob import ContainerClient

from selfhost.keys import load_or_create_keys
from shared.validation import ValidationReport, iter_export_files, validate_export
from tests.support.azurite import Azurite
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "cancelled"}


def service_env(azurite: Azurite, fhir: FhirTestServer, tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "LOCAL_SECRETS_PATH": str(tmp / "secrets"),
        "KEY_VAULT_URL": "",
        "EXPORT_DEFAULT_FHIR_BASE_URL": fhir.base_url,
        "OUTBOUND_ALLOW": "127.0.0.1,localhost",  # every test server listens there
        "MAIL_NOTIFIER_SCHEDULE": "*/30 * * * * *",
        "GENERATED_DATA_CONTAINER": "generated-data",
        # Tests write to many containers of Azurite's one account; the policy's own tests narrow it.
        "DESTINATION_CONTAINERS": "*",
        "EXPORT_DEFAULT_CONTAINER": "exports",
        "SMTP_HOST": "",
        "MAIL_FROM": "",
        # Tests poll every 50 ms; the rate limit's own tests set it (tests/e2e/test_callers.py).
        "RATE_LIMIT_PER_MINUTE": "0",
        # One Azurite serves every module, and a module's unfinished jobs would hold places in
        # the next one's line; the caps' own tests set them (tests/e2e/test_job_limits.py).
        "MAX_RUNNING_JOBS_PER_USER": "0",
        "MAX_RUNNING_JOBS_PER_KIND": "fhir-export=0,batch=0,session=0",
        "MAX_OPEN_JOBS_PER_USER": "0",
    }
    env.update(extra)
    return env


def start_service(azurite: Azurite, fhir: FhirTestServer, tmp: Path, **extra: str) -> RuntimeProcess:
    """The service on a fresh state folder. The FHIR front door checks its own keys, so its
    FHIR_FRONTDOOR_KEYS is the runtime's default function key, made here before the runtime
    starts (the runtime keeps the keys.json it finds)."""
    state = tmp / "state"
    key = load_or_create_keys(state).default_function_key
    env = service_env(azurite, fhir, tmp, **{"FHIR_FRONTDOOR_KEYS": key, **extra})
    return RuntimeProcess(ROOT, state, env=env).start()


class ExportClient:
    def __init__(self, rt: RuntimeProcess) -> None:
        self.rt = rt
        self.http = httpx.Client(timeout=30, headers={"x-functions-key": rt.function_key})

    def close(self) -> None:
        self.http.close()

    def submit(self, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(self.rt.url("api/exports"), json=body)

    def start(self, body: dict[str, Any]) -> str:
        r = self.submit(body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(self.rt.url(f"api/exports/{job_id}"))
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, job_id: str, timeout: float = 120, states: set[str] = TERMINAL) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            st = self.status(job_id)
            return st if st["state"] in states else None

        return wait_until(done, timeout=timeout, interval=0.2, message=f"export {job_id} to reach {states}")


def export_body(
    fhir: FhirTestServer, types: list[str], container: str, prefix: str, **options: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {
            "kind": "fhir",
            "base_url": fhir.base_url,
            "types": types,
            "page_size": options.pop("page_size", 50),
        },
        "destination": {"kind": "blob", "container": container, "path_prefix": prefix},
        "requested_by": "engineer@example.com",
    }
    if options:
        body["options"] = options
    return body


def validate(
    azurite: Azurite, fhir: FhirTestServer, types: list[str], container: str, prefix: str
) -> ValidationReport:
    client = ContainerClient.from_connection_string(azurite.connection_string, container)
    try:
        return validate_export(fhir.expected_ids(types), iter_export_files(client, prefix + "/"))
    finally:
        client.close()
