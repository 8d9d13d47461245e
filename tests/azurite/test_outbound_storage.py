"""Storage of an account a request names, against Azurite, through the guarded transport.

Azurite stands for the partner's account: the service's own storage in these settings is another
one (`UseDevelopmentStorage=true`, never called here), so every client below is made under the
outbound policy. Made-up names resolve through a test resolver to 127.0.0.1, and every socket the
transport opens is recorded and must go there.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

import shared.outbound_azure as outbound_azure
from shared.config import Settings
from shared.contracts import BlobDestinationSpec
from shared.destinations.base import Destination, block_id
from shared.destinations.factory import make_destination
from shared.items.factory import make_item_source
from shared.outbound import OutboundPolicy, OutboundRefused
from shared.storage_policy import DestinationRefused
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, Azurite

pytestmark = pytest.mark.azurite

# Production-style: Azurite takes the account from the host's first label, as Azure does.
PARTNER_HOST = f"{ACCOUNT}.blob.partner.example"
# The local defaults (local.settings.example.json): loopback explicitly, so `make run` works.
LOCAL_ALLOW = "127.0.0.1,localhost"


class Dns:
    """Answers per name, in turn (the last repeats): a name can rebind between calls."""

    def __init__(self, answers: dict[str, list[Sequence[str]]]) -> None:
        self.answers = answers

    def __call__(self, host: str, port: int) -> Sequence[str]:
        queue = self.answers.get(host)
        if queue is None:
            return [host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture(autouse=True)
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The addresses the guarded transport connected to; only 127.0.0.1 is allowed."""
    seen: list[str] = []
    real = outbound_azure._connect

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        seen.append(address[0])
        assert address[0] == "127.0.0.1", f"the transport tried to connect to {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(outbound_azure, "_connect", connect)
    return seen


def _settings(allow: str, dns: Dns | None = None) -> Settings:
    settings = Settings.from_env(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "OUTBOUND_ALLOW": allow}
    )
    if dns is None:
        return settings
    return dataclasses.replace(settings, outbound=OutboundPolicy.parse(allow, dns))


def _name() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


def _sas(container: str, minutes: int = 60) -> str:
    permission = ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True, list=True)
    expiry = datetime.now(UTC) + timedelta(minutes=minutes)
    return generate_container_sas(
        ACCOUNT, container, account_key=ACCOUNT_KEY, permission=permission, expiry=expiry
    )


def test_an_allow_listed_azurite_works_end_to_end_through_the_guarded_transport(
    azurite: Azurite, opened: list[str]
) -> None:
    settings = _settings(LOCAL_ALLOW)
    assert settings.destination_policy.outbound_for(azurite.connection_string) is settings.outbound
    container = _name()
    spec = BlobDestinationSpec(container=container, path_prefix="run", secret_name="dest")
    destination = make_destination(spec, azurite.connection_string, settings)
    destination.check_connection()
    destination.stage("Patient-1.ndjson", block_id("Patient", 1, 0), b'{"id":"p1"}\n')
    destination.commit("Patient-1.ndjson", [block_id("Patient", 1, 0)], {"job": "j1"})
    listed = [b.name for b in BlobServiceClient.from_connection_string(azurite.connection_string)
              .get_container_client(container).list_blobs()]  # fmt: skip
    assert listed == ["run/Patient-1.ndjson"]
    assert opened and set(opened) == {"127.0.0.1"}  # through the guarded transport


def test_a_named_account_connects_to_the_address_its_name_was_checked_at(
    azurite: Azurite, opened: list[str]
) -> None:
    # The name exists only in the test resolver: reaching Azurite proves the transport resolved
    # through the policy and connected to the checked address (SAS and connection string alike).
    dns = Dns({PARTNER_HOST: [["127.0.0.1"]]})
    settings = _settings(LOCAL_ALLOW, dns)
    container = _name()
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    sas_url = f"http://{PARTNER_HOST}:{azurite.blob_port}/{container}?{_sas(container)}"
    destination = make_destination(
        BlobDestinationSpec(container=container, secret_name="d"), sas_url, settings
    )
    destination.stage("a.ndjson", "b1", b"{}\n")
    destination.commit("a.ndjson", ["b1"], {})
    # A batch reading that account (the blob item source): listing and reading go the same way.
    connection = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                  f"BlobEndpoint=http://{PARTNER_HOST}:{azurite.blob_port};")  # fmt: skip
    outbound = settings.destination_policy.outbound_for(connection)
    assert outbound is settings.outbound
    source = make_item_source("blob", container=container, secret_value=connection, outbound=outbound)
    assert source.stat("a.ndjson").size == 3
    with source.open("a.ndjson") as chunks:
        assert b"".join(chunks) == b"{}\n"
    assert set(opened) == {"127.0.0.1"}


def test_a_name_that_rebinds_after_it_worked_is_refused_for_new_connections(
    azurite: Azurite, opened: list[str]
) -> None:
    dns = Dns({PARTNER_HOST: [["127.0.0.1"]]})
    settings = _settings("127.0.0.1", dns)  # the address is listed, the name is not
    container = _name()
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    spec = BlobDestinationSpec(container=container, secret_name="d")

    def destination(minutes: int) -> Destination:  # another SAS, another client
        url = f"http://{PARTNER_HOST}:{azurite.blob_port}/{container}?{_sas(container, minutes)}"
        return make_destination(spec, url, settings)

    destination(60).check_connection()  # checked where made, and where it connects: 127.0.0.1
    # Another job's client, made while the name still looks fine; then the name rebinds.
    dns.answers[PARTNER_HOST] = [["127.0.0.1"], ["169.254.169.254"]]
    later = destination(61)
    with pytest.raises(OutboundRefused, match="169.254.169.254"):
        later.check_connection()
    # And a client made after the rebinding is refused where it is made.
    with pytest.raises(DestinationRefused, match="169.254.169.254"):
        destination(62)
    assert set(opened) == {"127.0.0.1"}
