"""make_source picks the implementation by kind and wires the shared client and the secret."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest

from shared.errors import ValidationError
from shared.outbound import OutboundPolicy, OutboundRefused
from shared.sources import FhirSource, Source, make_http_client, make_source
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
    elements: tuple[str, ...] = ()
    patient_params: dict[str, str] = field(default_factory=dict)


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


def test_the_http_client_is_confined_and_does_not_follow_redirects() -> None:
    with make_http_client(OutboundPolicy()) as client:
        assert client.follow_redirects is False
        with pytest.raises(OutboundRefused, match="internal address"):
            client.get("http://127.0.0.1:9/")  # refused before any connection is tried
        assert client.timeout.connect == 10.0
