"""shared.health with a fake storage probe, and the HTTP adapter against a closed port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)

from shared.health import OK, BlobServiceProbe, check_health, probe_for
from tests.support.ports import free_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LXRoYXQtbXVzdC1uZXZlci1sZWFr"
CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)


def example_settings() -> dict[str, str]:
    """The Values `make run` starts with (local.settings.example.json)."""
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    return {key: str(value) for key, value in values.items()}


class FakeProbes:
    """A probe factory and its probe in one: records what it was asked to probe, fails if told to."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.asked: list[str] = []

    def __call__(self, storage: str) -> FakeProbes:
        self.asked.append(storage)
        return self

    def probe(self) -> None:
        if self.error is not None:
            raise self.error


def http_error(status: int, code: str) -> HttpResponseError:
    error = HttpResponseError(message=f"{code} for {CONNECTION}")
    error.status_code = status
    error.error_code = code  # type: ignore[attr-defined]  # set by the storage SDK's error mapping
    return error


def test_healthy_when_settings_are_valid_and_storage_answers() -> None:
    probes = FakeProbes()
    report = check_health({**example_settings(), "AzureWebJobsStorage": CONNECTION}, probes)

    assert report.to_json() == {"status": "ok", "checks": {"runtime": OK, "settings": OK, "storage": OK}}
    assert report.http_status == 200
    assert probes.asked == [CONNECTION]


def test_example_local_settings_are_valid() -> None:
    """`make run` copies the example: it must pass the settings check as shipped."""
    report = check_health(example_settings(), FakeProbes())

    assert report.checks["settings"] == OK
    assert report.healthy


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ServiceRequestError(f"cannot connect: {CONNECTION}"), "error: unreachable"),
        (ServiceResponseTimeoutError("read timed out"), "error: timeout"),
        (ClientAuthenticationError("no token"), "error: authentication failed"),
        (http_error(403, "AuthorizationFailure"), "error: http 403 AuthorizationFailure"),
        (ValueError("Connection string is either blank or malformed."), "error: invalid connection setting"),
        (AzureError("something else"), "error: AzureError"),
    ],
)
def test_storage_failure_is_degraded_with_a_short_secret_free_reason(error: Exception, expected: str) -> None:
    report = check_health({**example_settings(), "AzureWebJobsStorage": CONNECTION}, FakeProbes(error))

    assert report.checks == {"runtime": OK, "settings": OK, "storage": expected}
    assert report.status == "degraded"
    assert report.http_status == 503
    assert ACCOUNT_KEY not in json.dumps(report.to_json())


def test_invalid_settings_name_the_setting_and_skip_the_probe() -> None:
    settings = {key: value for key, value in example_settings().items() if key != "AzureWebJobsStorage"}
    probes = FakeProbes()

    report = check_health(settings, probes)

    assert report.http_status == 503
    assert report.checks["settings"].startswith("error: setting AzureWebJobsStorage:")
    assert report.checks["storage"] == "error: not checked (invalid settings)"
    assert probes.asked == []


def test_invalid_setting_value_is_never_echoed() -> None:
    malformed = f"AccountKey={ACCOUNT_KEY};a part without an equals sign"
    report = check_health({**example_settings(), "AzureWebJobsStorage": malformed}, FakeProbes())

    assert report.checks["settings"].startswith("error: setting AzureWebJobsStorage:")
    assert ACCOUNT_KEY not in json.dumps(report.to_json())


class RecordingLister:
    """A BlobServiceClient stand-in: records the list call and how many containers were consumed."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.consumed = 0

    def list_containers(self, **kwargs: Any) -> Iterator[object]:
        self.kwargs = kwargs
        for index in range(100):
            self.consumed += 1
            yield f"container-{index}"


def test_blob_probe_reads_a_single_container_of_a_single_page() -> None:
    client = RecordingLister()

    BlobServiceProbe(client).probe()

    assert client.kwargs["results_per_page"] == 1
    assert client.kwargs["timeout"] > 0
    assert client.consumed == 1


def test_probe_client_is_built_once_per_process_per_account() -> None:
    first = probe_for(CONNECTION)

    assert probe_for(CONNECTION) is first
    assert probe_for(CONNECTION.replace("127.0.0.1:1", "127.0.0.1:2")) is not first


def test_http_adapter_answers_503_json_without_secrets_when_storage_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from http_api.health import health

    closed = free_port()  # nothing listens there: connection refused at once
    connection = CONNECTION.replace("127.0.0.1:1", f"127.0.0.1:{closed}")
    for key, value in {**example_settings(), "AzureWebJobsStorage": connection}.items():
        monkeypatch.setenv(key, value)
    request = func.HttpRequest(method="GET", url="http://127.0.0.1/api/health", body=b"")

    response = health(request)

    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.get_body())
    assert body == {
        "status": "degraded",
        "checks": {"runtime": OK, "settings": OK, "storage": "error: unreachable"},
    }
    assert ACCOUNT_KEY not in response.get_body().decode()
