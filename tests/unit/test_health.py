"""shared.health with fake probes: each check's classification, what is critical (503) and what
only degrades (200), and the HTTP adapter against closed ports."""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)

from shared.config import Settings
from shared.errors import PermanentError, TransientError
from shared.health import (
    NOT_CONFIGURED,
    OK,
    BlobServiceProbe,
    HealthReport,
    Probes,
    check_durable,
    check_health,
    probe_for,
    status_probe,
)
from shared.health_probes import PROBE_SECRET, check_secrets, check_smtp, probe_smtp
from shared.secrets.base import SecretNotFoundError
from shared.secrets.local import LocalSecretStore
from tests.support.ports import free_port

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LXRoYXQtbXVzdC1uZXZlci1sZWFr"
CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)
SECRET_VALUE = "a-secret-value-that-must-never-show"


def example_settings() -> dict[str, str]:
    """The Values `make run` starts with (local.settings.example.json)."""
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    return {key: str(value) for key, value in values.items()}


def env(**extra: str) -> dict[str, str]:
    return {**example_settings(), "AzureWebJobsStorage": CONNECTION, **extra}


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


class FakeSecrets:
    """A secret store whose `get` answers as told: a value, not found, or an error."""

    def __init__(self, error: Exception | None = None, value: str | None = None) -> None:
        self.error, self.value = error, value
        self.asked: list[str] = []

    def __call__(self, settings: Settings) -> FakeSecrets:
        return self

    def get(self, name: str) -> str:
        self.asked.append(name)
        if self.error is not None:
            raise self.error
        if self.value is None:
            raise SecretNotFoundError(name)
        return self.value

    def set(self, name: str, value: str) -> None:
        raise AssertionError("a health check never writes a secret")

    def delete(self, name: str) -> None:
        raise AssertionError("a health check never deletes a secret")


class FakeSmtp:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str | None, int]] = []

    def __call__(self, settings: Settings) -> None:
        self.calls.append((settings.smtp_host, settings.smtp_port))
        if self.error is not None:
            raise self.error


async def durable_ok() -> None:
    return None


def probes(
    storage: Exception | None = None, secrets: Exception | None = None, smtp: Exception | None = None
) -> Probes:
    return Probes(storage=FakeProbes(storage), secrets=FakeSecrets(secrets), smtp=FakeSmtp(smtp))


def check(environment: dict[str, str], probes: Probes, durable: Any = durable_ok) -> HealthReport:
    return asyncio.run(check_health(environment, durable=durable, probes=probes))


def http_error(status: int, code: str) -> HttpResponseError:
    error = HttpResponseError(message=f"{code} for {CONNECTION}")
    error.status_code = status
    error.error_code = code  # type: ignore[attr-defined]  # set by the storage SDK's error mapping
    return error


def caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


ALL_OK = {"runtime": OK, "settings": OK, "storage": OK, "durable": OK, "secrets": OK, "smtp": OK}


def test_healthy_when_every_check_passes() -> None:
    storage = FakeProbes()
    report = check(env(), Probes(storage=storage, secrets=FakeSecrets(), smtp=FakeSmtp()))

    assert report.to_json() == {"status": "ok", "checks": ALL_OK}
    assert report.http_status == 200
    assert storage.asked == [CONNECTION]


def test_example_local_settings_are_valid() -> None:
    """`make run` copies the example: it must pass the settings check as shipped."""
    report = check(example_settings(), probes())

    assert report.checks["settings"] == OK
    assert report.healthy


def test_smtp_is_not_configured_without_smtp_host_and_that_is_healthy() -> None:
    smtp = FakeSmtp()
    report = check(env(SMTP_HOST="", MAIL_FROM=""), Probes(FakeProbes(), FakeSecrets(), smtp))

    assert report.checks["smtp"] == NOT_CONFIGURED
    assert report.to_json()["status"] == "ok" and report.http_status == 200
    assert smtp.calls == []


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
def test_storage_failure_is_unavailable_with_a_short_secret_free_reason(
    error: Exception, expected: str
) -> None:
    report = check(env(), probes(storage=error))

    assert report.checks == {**ALL_OK, "storage": expected}
    assert report.status == "unavailable"
    assert report.http_status == 503
    assert ACCOUNT_KEY not in json.dumps(report.to_json())


def test_invalid_settings_name_the_setting_and_skip_the_probes_that_need_them() -> None:
    settings = {key: value for key, value in example_settings().items() if key != "AzureWebJobsStorage"}
    storage, secrets, smtp = FakeProbes(), FakeSecrets(), FakeSmtp()

    report = check(settings, Probes(storage, secrets, smtp))

    assert report.http_status == 503
    assert report.checks["settings"].startswith("error: setting AzureWebJobsStorage:")
    skipped = "error: not checked (invalid settings)"
    assert report.checks["storage"] == report.checks["secrets"] == report.checks["smtp"] == skipped
    assert report.checks["durable"] == OK  # reached through the binding, not the settings
    assert storage.asked == secrets.asked == smtp.calls == []


def test_invalid_setting_value_is_never_echoed() -> None:
    malformed = f"AccountKey={ACCOUNT_KEY};a part without an equals sign"
    report = check({**example_settings(), "AzureWebJobsStorage": malformed}, probes())

    assert report.checks["settings"].startswith("error: setting AzureWebJobsStorage:")
    assert ACCOUNT_KEY not in json.dumps(report.to_json())


# -- durable runtime ---------------------------------------------------------------------------


class StatusClient:
    def __init__(self, error: Exception | None = None, delay: float = 0) -> None:
        self.error, self.delay = error, delay
        self.asked: list[str] = []

    async def get_status(self, instance_id: str) -> object:
        self.asked.append(instance_id)
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return object()


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (StatusClient(), OK),
        (StatusClient(TypeError("a 404 without a body")), OK),  # no such instance: the runtime answered
        (
            StatusClient(Exception("The operation failed with an unexpected status code 500")),
            "error: http 500",
        ),
        (
            StatusClient(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 7071)")),
            "error: unreachable",
        ),
        (StatusClient(RuntimeError("odd")), "error: RuntimeError"),
        (StatusClient(delay=5), "error: timeout"),
    ],
)
def test_durable_runtime_states(client: StatusClient, expected: str) -> None:
    assert asyncio.run(check_durable(lambda: status_probe(client), timeout=0.2)) == expected
    assert client.asked == ["health-probe"]


def test_durable_runtime_down_is_critical() -> None:
    client = StatusClient(ConnectionRefusedError(111, "refused"))
    report = check(env(), probes(), durable=lambda: status_probe(client))

    assert report.checks == {**ALL_OK, "durable": "error: unreachable"}
    assert (report.status, report.http_status) == ("unavailable", 503)


def test_without_a_durable_client_the_check_fails() -> None:
    assert asyncio.run(check_durable(None)) == "error: not checked (no durable client)"


# -- secret store ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        (FakeSecrets(), OK),
        (FakeSecrets(value=SECRET_VALUE), OK),
        (FakeSecrets(caused(PermanentError("get secret: not authorized"), ClientAuthenticationError("401"))),
         "error: authentication failed"),
        (FakeSecrets(caused(PermanentError("get secret: HTTP 403"), http_error(403, "Forbidden"))),
         "error: http 403 Forbidden"),
        (FakeSecrets(caused(TransientError("Key Vault unreachable"), ServiceRequestError("dns"))),
         "error: unreachable"),
        (FakeSecrets(TransientError("busy")), "error: unavailable"),
        (FakeSecrets(PermanentError("no")), "error: refused"),
    ],
)  # fmt: skip
def test_secret_store_states_never_show_a_value(secrets: FakeSecrets, expected: str) -> None:
    settings = Settings.from_env(env())
    state = check_secrets(secrets, settings)

    assert state == expected
    assert secrets.asked == [PROBE_SECRET]
    assert SECRET_VALUE not in state


def test_secret_store_down_is_degraded_not_unavailable() -> None:
    error = caused(TransientError("Key Vault unreachable"), ServiceRequestError("dns"))
    report = check(env(), probes(secrets=error))

    assert report.checks == {**ALL_OK, "secrets": "error: unreachable"}
    assert (report.status, report.http_status) == ("degraded", 200)


def test_local_secret_store_answers_for_a_missing_folder_and_fails_for_a_file(tmp_path: Path) -> None:
    settings = Settings.from_env(env())
    assert check_secrets(lambda _: LocalSecretStore(tmp_path / "not-yet-made"), settings) == OK
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert (
        check_secrets(lambda _: LocalSecretStore(a_file), settings) == "error: local store NotADirectoryError"
    )


# -- SMTP --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "error: connection refused"),
        (TimeoutError("timed out"), "error: timeout"),
        (socket.gaierror(-2, "Name or service not known"), "error: host not found"),
        (ssl.SSLError(1, "wrong version number"), "error: tls failed"),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "error: disconnected"),
        (smtplib.SMTPResponseException(421, b"4.3.2 service not available"), "error: smtp 421"),
        (OSError(113, "No route to host"), "error: unreachable"),
    ],
)
def test_smtp_states(error: Exception, expected: str) -> None:
    assert check_smtp(Settings.from_env(env()), FakeSmtp(error)) == expected


def test_smtp_down_is_degraded_not_unavailable() -> None:
    report = check(env(), probes(smtp=ConnectionRefusedError(111, "refused")))

    assert report.checks == {**ALL_OK, "smtp": "error: connection refused"}
    assert (report.status, report.http_status) == ("degraded", 200)


def test_the_real_smtp_probe_reports_a_closed_port_as_refused() -> None:
    settings = Settings.from_env(env(SMTP_HOST="127.0.0.1", SMTP_PORT=str(free_port())))
    assert check_smtp(settings, probe_smtp) == "error: connection refused"


def test_a_slow_check_is_a_timeout_and_does_not_hold_the_answer() -> None:
    class Slow(FakeSmtp):
        def __call__(self, settings: Settings) -> None:
            import time

            time.sleep(1.0)

    report = asyncio.run(
        check_health(
            env(), durable=durable_ok, probes=Probes(FakeProbes(), FakeSecrets(), Slow()), timeout=0.2
        )
    )
    assert report.checks["smtp"] == "error: timeout"
    assert report.http_status == 200


# -- storage probe and the adapter -------------------------------------------------------------


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
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from http_api.health import answer

    closed = free_port()  # nothing listens there: connection refused at once
    connection = CONNECTION.replace("127.0.0.1:1", f"127.0.0.1:{closed}")
    environment = env(
        AzureWebJobsStorage=connection, SMTP_PORT=str(free_port()), LOCAL_SECRETS_PATH=str(tmp_path)
    )

    response = answer(asyncio.run(check_health(environment, durable=durable_ok)))

    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.get_body())
    assert body == {
        "status": "unavailable",
        "checks": {**ALL_OK, "storage": "error: unreachable", "smtp": "error: connection refused"},
    }
    assert ACCOUNT_KEY not in response.get_body().decode()
