"""FhirSource against the real FHIR test server on loopback: paging invariants and injected faults.

Also checks the test server itself (ordering, `_lastUpdated` prefixes, lazy data, fault API), since
other tiers and the benchmarks rely on it.
"""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import PermanentError, RetryAfterError, SourceDataError, TransientError
from shared.sources import FhirSource, Page
from tests.support.fhir_server import Fault, FhirRequest, FhirTestServer, encode_cursor

pytestmark = pytest.mark.runtime

COUNTS = {"Patient": 137, "Observation": 211, "Encounter": 3, "Condition": 0}
SINCES = [
    None,
    "2024-01-01T00:00:00Z",
    "2024-06-15T08:30:00Z",
    "2024-12-30T00:00:00+01:00",
    "2030-01-01T00:00:00Z",
]


@pytest.fixture(scope="module")
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer(COUNTS) as srv:
        yield srv


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http_client:
        yield http_client


@pytest.fixture
def fresh() -> Iterator[FhirTestServer]:
    """A server of its own for tests that inject faults or count requests."""
    with FhirTestServer({"Patient": 30, "Observation": 30}) as srv:
        yield srv


def read_all(source: FhirSource, resource_type: str, cursor: str | None = None) -> list[Page]:
    pages = []
    while True:
        page = source.fetch_page(resource_type, cursor)
        pages.append(page)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def ids_of(pages: list[Page]) -> list[str]:
    return [json.loads(line)["id"] for page in pages for line in page.ndjson.splitlines()]


# -- paging invariants -------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    page_size=st.integers(min_value=1, max_value=60),
    since=st.sampled_from(SINCES),
    resource_type=st.sampled_from(sorted(COUNTS)),
    final_only=st.booleans(),
    restart_after=st.integers(min_value=0, max_value=5),
)
def test_paging_yields_each_id_exactly_once(
    server: FhirTestServer,
    client: httpx.Client,
    page_size: int,
    since: str | None,
    resource_type: str,
    final_only: bool,
    restart_after: int,
) -> None:
    filters = ["Observation?status=final"] if final_only and resource_type == "Observation" else []
    source = FhirSource(
        client, server.base_url, types=[resource_type], since=since, type_filters=filters, page_size=page_size
    )
    # Read a few pages, then resume from the checkpointed cursor with a new source, as a new
    # activity (or a process restarted after a crash) would.
    pages: list[Page] = []
    cursor: str | None = None
    for _ in range(restart_after):
        page = source.fetch_page(resource_type, cursor)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    if cursor is not None or not pages:
        resumed = FhirSource(
            client,
            server.base_url,
            types=[resource_type],
            since=since,
            type_filters=filters,
            page_size=page_size,
        )
        pages.extend(read_all(resumed, resource_type, cursor))

    got = ids_of(pages)
    expected = list(server.expected_ids([resource_type], since, filters)[resource_type])
    assert got == expected  # same ids, same (id) order, so no loss and no duplication
    assert all(page.count <= page_size for page in pages)
    # No empty pages: the server looks ahead, so the last page with results has no next link.
    assert all(page.count > 0 for page in pages) or got == []


def test_since_is_exclusive(server: FhirTestServer, client: httpx.Client) -> None:
    boundary = server.dataset.resource("Patient", 5)["meta"]["lastUpdated"]
    source = FhirSource(client, server.base_url, types=["Patient"], since=boundary, page_size=1000)
    got = ids_of(read_all(source, "Patient"))
    assert "patient-00000005" not in got
    assert got == list(server.expected_ids(["Patient"], boundary)["Patient"])
    # The server honours `ge` too, so the exclusion above is the source's choice of `gt`.
    inclusive = client.get(
        f"{server.base_url}/Patient", params={"_lastUpdated": f"ge{boundary}", "_count": 1000}
    )
    assert "patient-00000005" in {e["resource"]["id"] for e in inclusive.json()["entry"]}


def test_a_full_last_page_has_no_next_link(server: FhirTestServer, client: httpx.Client) -> None:
    # The last Patient is excluded by `since`, so a page exactly as large as the result set ends
    # with non-matching resources still unscanned: the server must look ahead, not link to an
    # empty page.
    since = server.dataset.resource("Patient", COUNTS["Patient"] - 1)["meta"]["lastUpdated"]
    expected = list(server.expected_ids(["Patient"], since)["Patient"])
    assert 0 < len(expected) < COUNTS["Patient"] - 1
    source = FhirSource(client, server.base_url, types=["Patient"], since=since, page_size=len(expected))
    page = source.fetch_page("Patient", None)
    assert page.is_last and ids_of([page]) == expected


def test_bearer_token_is_required_and_accepted(client: httpx.Client) -> None:
    with FhirTestServer({"Patient": 3}, required_token="tok-123") as srv:
        good = FhirSource(client, srv.base_url, types=["Patient"], bearer_token="tok-123")
        good.check_connection()
        assert len(ids_of(read_all(good, "Patient"))) == 3
        bad = FhirSource(client, srv.base_url, types=["Patient"], bearer_token="wrong")
        with pytest.raises(PermanentError, match="HTTP 401") as caught:
            bad.fetch_page("Patient", None)
        assert "wrong" not in str(caught.value)


def test_unknown_search_parameter_outcome_entry_is_skipped(
    server: FhirTestServer, client: httpx.Client
) -> None:
    source = FhirSource(
        client, server.base_url, types=["Encounter"], type_filters=["Encounter?not-a-param=1"]
    )
    page = source.fetch_page("Encounter", None)
    assert page.count == 3 and b"OperationOutcome" not in page.ndjson
    raw = client.get(f"{server.base_url}/Encounter", params={"not-a-param": "1"}).json()
    assert raw["entry"][-1]["search"]["mode"] == "outcome"  # the server did send one


# -- faults through the real stack -------------------------------------------------------------


def test_503_with_retry_after_then_recovery(fresh: FhirTestServer, client: httpx.Client) -> None:
    armed = fresh.faults.add(Fault("status", status=503, retry_after="3", times=2, resource_type="Patient"))
    source = FhirSource(client, fresh.base_url, types=["Patient", "Observation"], page_size=10)
    for _ in range(2):
        with pytest.raises(RetryAfterError) as caught:
            source.fetch_page("Patient", None)
        assert caught.value.retry_after_s == 3.0
    assert source.fetch_page("Observation", None).count == 10  # other types were never affected
    assert source.fetch_page("Patient", None).count == 10
    assert armed.fired == 2 and armed.exhausted and fresh.faults.pending() == []
    assert fresh.requests_served == 4


def test_429_with_http_date(fresh: FhirTestServer, client: httpx.Client) -> None:
    fresh.faults.add(Fault("status", status=429, retry_after="Wed, 01 Jan 2025 12:00:45 GMT"))
    source = FhirSource(
        client, fresh.base_url, types=["Patient"], now=lambda: datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    )
    with pytest.raises(RetryAfterError) as caught:
        source.fetch_page("Patient", None)
    assert caught.value.retry_after_s == 45.0


def test_permanent_4xx_carries_the_outcome_text(fresh: FhirTestServer, client: httpx.Client) -> None:
    fresh.faults.add(Fault("status", status=403, diagnostics="scope patient/*.read missing", times=None))
    source = FhirSource(client, fresh.base_url, types=["Patient"])
    with pytest.raises(PermanentError, match="HTTP 403.*scope patient/\\*.read missing"):
        source.fetch_page("Patient", None)
    with pytest.raises(PermanentError):
        source.check_connection()  # resource_type=None faults hit /metadata too


def test_broken_page_names_the_type_and_page(fresh: FhirTestServer, client: httpx.Client) -> None:
    source = FhirSource(client, fresh.base_url, types=["Patient"], page_size=10)
    cursor = source.fetch_page("Patient", None).next_cursor
    assert cursor is not None
    for broken, problem in [
        ("json", "not JSON"),
        ("not-bundle", "not a Bundle"),
        ("no-resource", "has no resource"),
        ("wrong-type", "'Basic'"),
    ]:
        fresh.faults.add(Fault("broken", broken=broken, resource_type="Patient", page=2))  # type: ignore[arg-type]
        with pytest.raises(SourceDataError) as caught:
            source.fetch_page("Patient", cursor)
        assert str(caught.value).startswith(f"Patient page {cursor}: ")
        assert problem in str(caught.value)
    assert source.fetch_page("Patient", cursor).count == 10  # faults used up: page 2 is fine again


@pytest.mark.parametrize("kind", ["drop", "truncate"])
def test_connection_drops_are_transient(fresh: FhirTestServer, client: httpx.Client, kind: str) -> None:
    fresh.faults.add(Fault(kind, resource_type="Observation"))  # type: ignore[arg-type]
    source = FhirSource(client, fresh.base_url, types=["Observation"], page_size=30)
    with pytest.raises(TransientError):
        source.fetch_page("Observation", None)
    assert source.fetch_page("Observation", None).count == 30


def test_slow_page_times_out_as_transient(fresh: FhirTestServer) -> None:
    fresh.faults.add(Fault("slow", delay_s=2.0, page=1))
    with httpx.Client(timeout=httpx.Timeout(0.3)) as impatient:
        source = FhirSource(impatient, fresh.base_url, types=["Patient"])
        started = time.monotonic()
        with pytest.raises(TransientError, match="timed out"):
            source.fetch_page("Patient", None)
        assert time.monotonic() - started < 1.5
        assert source.fetch_page("Patient", None).count == 30


def test_fault_match_predicate(fresh: FhirTestServer, client: httpx.Client) -> None:
    def second_page_of_anything(request: FhirRequest) -> bool:
        return bool(request.param("ct"))

    fresh.faults.add(Fault("status", status=500, match=second_page_of_anything, times=None))
    source = FhirSource(client, fresh.base_url, types=["Patient"], page_size=20)
    first = source.fetch_page("Patient", None)
    assert first.next_cursor is not None
    with pytest.raises(TransientError, match="HTTP 500"):
        source.fetch_page("Patient", first.next_cursor)
    fresh.faults.clear()
    assert source.fetch_page("Patient", first.next_cursor).is_last


def test_faults_fire_exactly_times_under_concurrency(fresh: FhirTestServer, client: httpx.Client) -> None:
    armed = fresh.faults.add(Fault("status", status=503, times=5))
    statuses: list[int] = []
    lock = threading.Lock()

    def hit() -> None:
        status = client.get(f"{fresh.base_url}/Patient").status_code  # httpx.Client is thread-safe
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=hit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 15 + [503] * 5
    assert armed.fired == 5 and fresh.requests_served == 20


# -- the test server itself --------------------------------------------------------------------


def test_server_metadata_read_and_errors(server: FhirTestServer, client: httpx.Client) -> None:
    meta = client.get(f"{server.base_url}/metadata").json()
    assert meta["resourceType"] == "CapabilityStatement"
    assert {r["type"] for r in meta["rest"][0]["resource"]} == set(COUNTS)
    read = client.get(f"{server.base_url}/Patient/patient-00000004")
    assert read.json() == server.dataset.resource("Patient", 4)
    assert client.get(f"{server.base_url}/Patient/patient-99999999").status_code == 404
    assert client.get(f"{server.base_url}/Medication").status_code == 404
    bad = client.get(f"{server.base_url}/Patient", params={"ct": "!!!"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    strict = client.get(
        f"{server.base_url}/Patient", params={"nope": "1"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400


def test_resources_are_padded_to_the_target_size() -> None:
    with FhirTestServer({"Observation": 5}, resource_bytes=1024) as srv, httpx.Client() as http:
        page = FhirSource(http, srv.base_url, types=["Observation"]).fetch_page("Observation", None)
    assert [len(line) for line in page.ndjson.splitlines()] == [1024] * 5


def test_large_dataset_is_lazy(client: httpx.Client) -> None:
    tracemalloc.start()
    try:
        with FhirTestServer({"Patient": 200_000, "Observation": 200_000}, resource_bytes=1024) as srv:
            source = FhirSource(client, srv.base_url, types=["Patient"], page_size=500)
            # Jump straight to the end with a cursor of the server's own format.
            last = source.fetch_page(
                "Patient", f"{srv.base_url}/Patient?_count=500&ct={encode_cursor(199_500, 400)}"
            )
            count = sum(1 for _ in srv.expected_ids(["Observation"])["Observation"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert last.is_last and ids_of([last]) == [f"patient-{i:08d}" for i in range(199_500, 200_000)]
    assert peak < 20 * 1024 * 1024  # materialised, 400,000 resources of 1 KB would be ~1 GB of objects


def test_server_stop_leaves_no_threads(client: httpx.Client) -> None:
    srv = FhirTestServer({"Patient": 1}).start()
    client.get(f"{srv.base_url}/Patient")  # leaves a keep-alive connection open
    prefix = f"fhir-test-server-{srv.port}"
    assert [t for t in threading.enumerate() if t.name.startswith(prefix)]
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 2  # idle connections are closed, not waited out
    # stop() joins its threads, so nothing is left even though the client kept its connection.
    assert not [t for t in threading.enumerate() if t.name.startswith(prefix)]
