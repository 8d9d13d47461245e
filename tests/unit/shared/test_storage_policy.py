"""The storage policy of Blob destinations: the service's own containers never, its own account
only for DESTINATION_CONTAINERS, other accounts by their own credentials and under the outbound
policy, the service's identity never for a host a request names. DNS goes through a test resolver."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from shared.config import Settings, SettingsError
from shared.errors import ValidationError
from shared.outbound import OutboundPolicy
from shared.storage_policy import DestinationPolicy, DestinationRefused, account_of

pytestmark = pytest.mark.unit

OWN = "DefaultEndpointsProtocol=https;AccountName=svc;AccountKey=a2V5;EndpointSuffix=core.windows.net"
OTHER_KEY = (
    "DefaultEndpointsProtocol=https;AccountName=partner;AccountKey=a2V5;EndpointSuffix=core.windows.net"
)
ADDRESSES = {"svc.blob.core.windows.net": "20.60.1.1", "partner.blob.core.windows.net": "20.60.2.2",
             "evil.example.com": "10.0.0.5", "public.example.com": "93.184.216.34"}  # fmt: skip


def resolver(host: str, port: int) -> list[str]:
    return [ADDRESSES.get(host, host)]


def policy(**kwargs: Any) -> DestinationPolicy:
    outbound = OutboundPolicy.parse(kwargs.pop("allow", None), resolver)
    return DestinationPolicy(
        own_connections=(OWN,), outbound=outbound, reserved=frozenset({"generated-data"}), **kwargs
    )


@pytest.mark.parametrize(
    "container", ["export-jobs", "export-work", "smart-jti", "azure-webjobs-hosts", "azure-webjobs-secrets",
                  "bulkexporthub-leases", "bulkexporthub-largemessages", "generated-data"],
)  # fmt: skip
def test_the_services_own_containers_are_never_a_destination(container: str) -> None:
    for connection in (None, OWN, "https://svc.blob.core.windows.net/x?sv=2024&sig=abc"):
        with pytest.raises(DestinationRefused) as refused:
            policy(own_containers=("*",)).check(connection, container)
        assert refused.value.part == "container" and "belongs to the service" in str(refused.value)


def test_the_own_account_takes_only_the_listed_containers() -> None:
    rules = policy(own_containers=("exports", "lab-*"))
    rules.check(None, "exports")
    rules.check(OWN, "lab-7")
    with pytest.raises(DestinationRefused, match="DESTINATION_CONTAINERS"):
        rules.check(None, "records")


def test_another_account_with_its_own_key_or_sas_may_write_any_container() -> None:
    rules = policy()
    rules.check(OTHER_KEY, "export-jobs")  # the partner's container of that name is theirs
    rules.check("https://partner.blob.core.windows.net/out?sv=2024&sig=abc", "out")


def test_an_account_url_without_a_sas_is_never_signed_with_the_services_identity() -> None:
    with pytest.raises(DestinationRefused) as refused:
        policy().check("https://public.example.com/out", "out")
    assert refused.value.part == "secret" and "identity" in str(refused.value)
    policy().check("https://svc.blob.core.windows.net", "exports")  # its own account: fine


def test_an_internal_endpoint_is_refused_unless_allow_listed() -> None:
    evil = (
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=a2V5;BlobEndpoint=https://evil.example.com"
    )
    with pytest.raises(DestinationRefused, match="internal address"):
        policy().check(evil, "out")
    policy(allow="evil.example.com").check(evil, "out")
    with pytest.raises(DestinationRefused, match="internal"):
        policy().check("http://169.254.169.254/x?sig=1", "x")


def test_accounts_are_read_from_every_connection_form() -> None:
    assert account_of(OWN).endpoint == "https://svc.blob.core.windows.net"
    assert account_of("UseDevelopmentStorage=true").endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    emulator = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    assert account_of(emulator).key == account_of("http://127.0.0.1:10000/devstoreaccount1/c?sig=1").key
    assert not account_of("https://svc.blob.core.windows.net/c").signed
    with pytest.raises(DestinationRefused, match="names no account"):
        account_of("AccountKey=a2V5")


def test_the_setting_is_checked_and_never_names_a_reserved_container() -> None:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    assert Settings.from_env(env).destination_containers == ("exports",)
    assert Settings.from_env({**env, "EXPORT_DEFAULT_CONTAINER": "out"}).destination_containers == ("out",)
    assert Settings.from_env({**env, "DESTINATION_CONTAINERS": "a-1, lab-*"}).destination_containers == (
        "a-1",
        "lab-*",
    )
    for bad in ("export-jobs", "UPPER", "a/b"):
        with pytest.raises(SettingsError, match="DESTINATION_CONTAINERS"):
            Settings.from_env({**env, "DESTINATION_CONTAINERS": bad})


def test_submission_names_the_field(tmp_path: Path) -> None:
    from shared import batch_api, job_api
    from shared.deps import Deps
    from shared.jobstore import MemoryJobStore
    from shared.secrets.local import LocalSecretStore

    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                  "EXPORT_DEFAULT_FHIR_BASE_URL": "https://fhir.example.org/r4"})  # fmt: skip
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    deps = Deps(settings=settings, jobs=MemoryJobStore(), secrets=LocalSecretStore(tmp_path), http=http,
                smart=cast(Any, None))  # fmt: skip
    body = {"source": {"kind": "fhir", "types": ["Patient"]}, "destination": {"kind": "blob", "container": "export-jobs"},
            "requested_by": "a@example.com"}  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        job_api.submit(body, deps)
    assert refused.value.field == "destination.container"
    batch = {"source": {"kind": "blob", "container": "acquired"}, "items": ["a.dcm"],
             "destination": {"kind": "blob", "container": "elsewhere"}, "requested_by": "a@example.com"}  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        batch_api.submit(batch, deps)
    assert refused.value.field == "destination.container" and "DESTINATION_CONTAINERS" in refused.value.detail


def test_a_batch_may_read_the_services_storage_but_never_its_own_records() -> None:
    rules = policy()
    rules.check(None, "acquired", reading=True)
    rules.check(None, "generated-data", reading=True)
    for container in ("export-jobs", "azure-webjobs-secrets", "smart-jti"):
        with pytest.raises(DestinationRefused, match="never read"):
            rules.check(None, container, reading=True)
    with pytest.raises(DestinationRefused, match="identity"):
        rules.check("https://public.example.com/c", "c", reading=True)
