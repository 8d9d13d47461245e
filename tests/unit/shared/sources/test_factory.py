"""make_source picks the implementation by kind and wires the shared client and the secret."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from shared.errors import ValidationError
from shared.sources import FhirSource, Source, make_source, shared_http_client
from tests.unit.shared.sources.fakes import BASE, TOKEN, Recorder, always, bundle

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Spec:
    """Stands in for shared.contracts.FhirSourceSpec (same attribute names)."""

    kind: str = "fhir"
    base_url: str = BASE
    types: tuple[str, ...] = ("Patient", "Observation")
    since: str | None = "2024-01-01T00:00:00Z"
    type_filters: list[str] = field(default_factory=lambda: ["Observation?status=final"])
    page_size: int = 5


def test_fhir_kind_builds_a_fhir_source_on_the_given_client_and_token() -> None:
    recorder = Recorder(always(200, bundle([])))
    with httpx.Client(transport=httpx.MockTransport(recorder)) as client:
        source = make_source(Spec(), client, TOKEN)
        assert isinstance(source, FhirSource) and isinstance(source, Source)
        source.fetch_page("Observation", None)
    sent = recorder.requests[0]
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.url.params.multi_items() == [
        ("_count", "5"),
        ("_lastUpdated", "gt2024-01-01T00:00:00Z"),
        ("status", "final"),
    ]


def test_unknown_kind_is_a_validation_error() -> None:
    with httpx.Client() as client, pytest.raises(ValidationError) as caught:
        make_source(Spec(kind="sql"), client, None)
    assert caught.value.field == "kind"


def test_invalid_spec_fails_at_construction() -> None:
    with httpx.Client() as client, pytest.raises(ValidationError) as caught:
        make_source(Spec(page_size=0), client, None)
    assert caught.value.field == "page_size"


@pytest.fixture
def fresh_shared_client() -> Iterator[None]:
    shared_http_client.cache_clear()
    yield
    shared_http_client().close()
    shared_http_client.cache_clear()


@pytest.mark.usefixtures("fresh_shared_client")
def test_shared_http_client_is_one_per_process_and_does_not_follow_redirects() -> None:
    client = shared_http_client()
    assert shared_http_client() is client
    assert client.follow_redirects is False
    assert client.timeout.connect == 10.0
