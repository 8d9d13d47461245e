"""BlobDestination against Azurite: staging, committing by list, idempotent re-runs, delete, SAS."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerSasPermissions, generate_container_sas
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Settings
from shared.contracts import BlobDestinationSpec
from shared.destinations.base import NDJSON_CONTENT_TYPE, block_id
from shared.destinations.blob import BlobDestination
from shared.destinations.factory import make_destination
from shared.errors import PermanentError, TransientError
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, Azurite

pytestmark = pytest.mark.azurite

FILE = "Patient-1.ndjson"


def _name() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


def _destination(azurite: Azurite, prefix: str = "run") -> BlobDestination:
    destination = BlobDestination.connect(azurite.connection_string, _name(), prefix, retry_total=0)
    destination.check_connection()
    return destination


def _read(destination: BlobDestination, name: str) -> bytes:
    return destination.container_client.download_blob(destination.blob_name(name)).readall()


def _page(n: int) -> bytes:
    return "".join(f'{{"resourceType":"Patient","id":"p{n}-{i}"}}\n' for i in range(3)).encode()


def _ids(n: int, sequence: int = 1) -> list[str]:
    return [block_id("Patient", sequence, page) for page in range(n)]


def test_check_connection_creates_the_container_once(azurite: Azurite) -> None:
    destination = BlobDestination.connect(azurite.connection_string, _name(), retry_total=0)
    assert not destination.container_client.exists()
    destination.check_connection()
    assert destination.container_client.exists()
    destination.check_connection()  # an existing container is the normal case


def test_stage_then_commit_makes_the_pages_the_file(azurite: Azurite) -> None:
    destination = _destination(azurite)
    ids = _ids(3)
    for page, block in enumerate(ids):
        destination.stage(FILE, block, _page(page))
    assert destination.committed_blocks(FILE) == []  # staged blocks are invisible until committed
    destination.commit(FILE, ids, {"job_id": "j1", "resource_type": "Patient"})
    assert _read(destination, FILE) == _page(0) + _page(1) + _page(2)
    assert destination.committed_blocks(FILE) == ids
    props = destination.container_client.get_blob_client(destination.blob_name(FILE)).get_blob_properties()
    assert props.content_settings.content_type == NDJSON_CONTENT_TYPE
    assert props.metadata == {"job_id": "j1", "resource_type": "Patient"}


def test_restaging_a_block_replaces_it_instead_of_duplicating(azurite: Azurite) -> None:
    destination = _destination(azurite)
    ids = _ids(2)
    destination.stage(FILE, ids[0], _page(0))
    destination.stage(FILE, ids[1], b"half a page\n")
    destination.stage(FILE, ids[0], _page(0))  # the retried page, same content
    destination.stage(FILE, ids[1], _page(1))  # the re-run page, now complete
    destination.commit(FILE, ids, {})
    assert _read(destination, FILE) == _page(0) + _page(1)


def test_a_page_rerun_after_a_commit_replaces_its_committed_block(azurite: Azurite) -> None:
    destination = _destination(azurite)
    ids = _ids(2)
    destination.stage(FILE, ids[0], _page(0))
    destination.stage(FILE, ids[1], b"stale\n")
    destination.commit(FILE, ids, {})
    destination.stage(FILE, ids[1], _page(1))
    destination.commit(FILE, ids, {})
    assert _read(destination, FILE) == _page(0) + _page(1)


def test_commit_with_a_superset_list_appends_without_duplicates(azurite: Azurite) -> None:
    destination = _destination(azurite)
    ids = _ids(4)
    for page in range(2):
        destination.stage(FILE, ids[page], _page(page))
    destination.commit(FILE, ids[:2], {"pages": "2"})
    for page in range(2, 4):
        destination.stage(FILE, ids[page], _page(page))
    destination.commit(FILE, ids, {"pages": "4"})  # committed blocks plus the new ones
    assert _read(destination, FILE) == b"".join(_page(n) for n in range(4))
    assert destination.committed_blocks(FILE) == ids
    destination.commit(FILE, ids, {"pages": "4"})  # committing the same list again changes nothing
    assert _read(destination, FILE) == b"".join(_page(n) for n in range(4))


def test_staged_blocks_left_out_of_the_list_are_dropped(azurite: Azurite) -> None:
    destination = _destination(azurite)
    ids = _ids(3)
    for page in range(3):
        destination.stage(FILE, ids[page], _page(page))
    destination.commit(FILE, [ids[0], ids[2]], {})
    assert _read(destination, FILE) == _page(0) + _page(2)
    _, uncommitted = destination.container_client.get_blob_client(destination.blob_name(FILE)).get_block_list(
        "all"
    )
    assert uncommitted == []


def test_metadata_and_content_type_are_what_the_last_commit_sent(azurite: Azurite) -> None:
    destination = _destination(azurite)
    ids = _ids(2)
    destination.stage(FILE, ids[0], _page(0))
    destination.commit(FILE, ids[:1], {"job_id": "j1", "state": "partial"})
    destination.stage(FILE, ids[1], _page(1))
    destination.commit(FILE, ids, {"job_id": "j1", "state": "complete"})
    props = destination.container_client.get_blob_client(destination.blob_name(FILE)).get_blob_properties()
    # Put Block List replaces both; the destination sends them on every commit.
    assert props.content_settings.content_type == NDJSON_CONTENT_TYPE
    assert props.metadata == {"job_id": "j1", "state": "complete"}


def test_files_of_one_type_are_independent(azurite: Azurite) -> None:
    destination = _destination(azurite)
    first, second = "Patient-1.ndjson", "Patient-2.ndjson"
    destination.stage(first, block_id("Patient", 1, 0), _page(0))
    destination.commit(first, [block_id("Patient", 1, 0)], {})
    destination.stage(second, block_id("Patient", 2, 1), _page(1))
    destination.commit(second, [block_id("Patient", 2, 1)], {})
    assert (_read(destination, first), _read(destination, second)) == (_page(0), _page(1))
    names = [b.name for b in destination.container_client.list_blobs()]
    assert names == ["run/Patient-1.ndjson", "run/Patient-2.ndjson"]  # under path_prefix


def test_delete_removes_committed_and_staged_files_and_tolerates_missing(azurite: Azurite) -> None:
    destination = _destination(azurite)
    destination.stage("A-1.ndjson", "0" * 33, _page(0))
    destination.commit("A-1.ndjson", ["0" * 33], {})
    destination.stage("B-1.ndjson", "0" * 33, _page(1))  # a partial file: staged, never committed
    destination.delete(["A-1.ndjson", "B-1.ndjson", "never-there.ndjson"])
    assert list(destination.container_client.list_blobs(include=["uncommittedblobs"])) == []
    blob = destination.container_client.get_blob_client(destination.blob_name("B-1.ndjson"))
    assert destination.committed_blocks("B-1.ndjson") == []
    with pytest.raises(ResourceNotFoundError):
        blob.get_block_list("uncommitted")  # no blocks are left waiting for garbage collection
    destination.delete(["A-1.ndjson"])  # idempotent


def test_url_reads_the_file_with_a_credential_and_has_no_query(azurite: Azurite) -> None:
    destination = _destination(azurite, prefix="deep/folder")
    destination.stage(FILE, "1" * 33, _page(0))
    destination.commit(FILE, ["1" * 33], {})
    url = destination.url(FILE)
    assert "?" not in url and url.endswith("/deep/folder/Patient-1.ndjson")
    blob = BlobClient.from_blob_url(url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY})
    assert blob.download_blob().readall() == _page(0)


def _sas_url(azurite: Azurite, container: str, permission: ContainerSasPermissions) -> str:
    sas = generate_container_sas(
        ACCOUNT,
        container,
        account_key=ACCOUNT_KEY,
        permission=permission,
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"http://127.0.0.1:{azurite.blob_port}/{ACCOUNT}/{container}?{sas}"


def test_a_container_sas_secret_works_end_to_end_and_stays_out_of_urls(azurite: Azurite) -> None:
    container = _name()
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    sas_url = _sas_url(
        azurite, container, ContainerSasPermissions(read=True, write=True, delete=True, list=True)
    )
    # Azurite listens on 127.0.0.1: the storage policy lets the SAS's endpoint through only if listed.
    settings_ = Settings.from_env(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "OUTBOUND_ALLOW": "127.0.0.1"}
    )
    spec = BlobDestinationSpec(container=container, path_prefix="sas", secret_name="export-j-destination-1")
    destination = make_destination(spec, sas_url, settings_, retry_total=0)
    destination.check_connection()  # a container SAS cannot create containers; listing proves access
    destination.stage(FILE, "2" * 33, _page(0))
    destination.commit(FILE, ["2" * 33], {"job_id": "j"})
    assert "sig=" not in destination.url(FILE)
    destination.delete([FILE])


def test_a_read_only_sas_fails_permanently(azurite: Azurite) -> None:
    container = _name()
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    destination = BlobDestination.connect(
        _sas_url(azurite, container, ContainerSasPermissions(read=True, list=True)), container, retry_total=0
    )
    with pytest.raises(PermanentError) as info:
        destination.stage(FILE, "3" * 33, _page(0))
    assert not isinstance(info.value, TransientError)
    assert "sig=" not in str(info.value)


def test_a_wrong_account_key_fails_permanently(azurite: Azurite) -> None:
    wrong = azurite.connection_string.replace(ACCOUNT_KEY, "d3Jvbmcta2V5")
    destination = BlobDestination.connect(wrong, _name(), retry_total=0)
    with pytest.raises(PermanentError) as info:
        destination.check_connection()
    assert "d3Jvbmcta2V5" not in str(info.value)


def test_the_factory_falls_back_to_export_storage_without_a_secret(azurite: Azurite) -> None:
    settings_ = Settings.from_env(
        {"AzureWebJobsStorage": azurite.connection_string, "DESTINATION_CONTAINERS": "*"}
    )
    destination = make_destination(BlobDestinationSpec(container=_name()), None, settings_, retry_total=0)
    destination.check_connection()
    destination.stage(FILE, "4" * 33, _page(0))
    destination.commit(FILE, ["4" * 33], {})


# Property: whatever order pages are staged and re-staged in, the file is exactly the latest
# content of each listed block, in list order, once.
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pages=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=6),
    reruns=st.lists(st.tuples(st.integers(0, 5), st.binary(min_size=1, max_size=64)), max_size=6),
    commit_after=st.integers(0, 6),
)
def test_file_is_the_latest_block_of_each_page_in_order(
    azurite: Azurite, pages: list[bytes], reruns: list[tuple[int, bytes]], commit_after: int
) -> None:
    destination = _destination(azurite)
    ids = _ids(len(pages))
    latest = list(pages)
    for page, data in enumerate(pages):
        destination.stage(FILE, ids[page], data)
        if page + 1 == commit_after:
            destination.commit(FILE, ids[: page + 1], {})  # an intermediate commit
    for page, data in reruns:
        if page < len(pages):
            destination.stage(FILE, ids[page], data)
            latest[page] = data
    destination.commit(FILE, ids, {})
    assert _read(destination, FILE) == b"".join(latest)
