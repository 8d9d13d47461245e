"""The first search URL per type: since, _typeFilter, _count, and fail-fast validation."""

from __future__ import annotations

import httpx
import pytest

from shared.errors import ValidationError
from shared.sources._query import FhirQuery

pytestmark = pytest.mark.unit


def params_of(url: str) -> list[tuple[str, str]]:
    return list(httpx.URL(url).params.multi_items())


def test_since_becomes_last_updated_greater_than() -> None:
    query = FhirQuery.build("https://h/fhir", ["Patient"], since="2024-05-01T10:00:00Z", page_size=250)
    url = query.first_url("Patient")
    assert url.startswith("https://h/fhir/Patient?")
    assert params_of(url) == [("_count", "250"), ("_lastUpdated", "gt2024-05-01T10:00:00Z")]


def test_no_since_means_no_last_updated() -> None:
    url = FhirQuery.build("https://h/fhir/", ["Patient"]).first_url("Patient")
    assert params_of(url) == [("_count", "1000")]
    assert url.startswith("https://h/fhir/Patient?")  # trailing slash of the base is not doubled


def test_offset_in_since_survives_url_encoding() -> None:
    url = FhirQuery.build("https://h", ["Patient"], since="2024-05-01T10:00:00+02:00").first_url("Patient")
    # A raw "+" would reach the server as a space; it must be percent-encoded.
    assert "%2B02%3A00" in url
    assert ("_lastUpdated", "gt2024-05-01T10:00:00+02:00") in params_of(url)


def test_type_filter_adds_its_params_to_that_type_only() -> None:
    query = FhirQuery.build(
        "https://h",
        ["Patient", "Observation"],
        type_filters=["Observation?status=final&code=http%3A%2F%2Floinc.org%7C8867-4"],
        page_size=10,
    )
    assert params_of(query.first_url("Observation")) == [
        ("_count", "10"),
        ("status", "final"),
        ("code", "http://loinc.org|8867-4"),
    ]
    assert params_of(query.first_url("Patient")) == [("_count", "10")]


def test_type_filter_and_since_combine() -> None:
    query = FhirQuery.build(
        "https://h", ["Observation"], since="2024-01-01T00:00:00Z", type_filters=["Observation?status=final"]
    )
    assert params_of(query.first_url("Observation")) == [
        ("_count", "1000"),
        ("_lastUpdated", "gt2024-01-01T00:00:00Z"),
        ("status", "final"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"since": "2024-05-01T10:00:00"}, "since"),  # no zone
        ({"since": "yesterday"}, "since"),
        ({"type_filters": ["Encounter?status=finished"]}, "type_filters"),  # type not exported
        ({"type_filters": ["Patient?gender=male,Patient?_sort=x"]}, "type_filters"),  # reserved in 2nd
        ({"elements": ["Patient.name.given"]}, "elements"),
        ({"patient_params": {"Patient": "_id"}, "patients": []}, "patients"),  # empty never means all
        ({"patient_params": {"Patient": "_id"}, "patients": ["a/b"]}, "patients"),
        ({"patient_params": {"Observation": "patient"}, "patients": ["a"]}, "patients"),  # Patient lacks one
        ({"type_filters": ["Patient?_count=5"]}, "type_filters"),  # reserved
        ({"type_filters": ["Patient"]}, "type_filters"),
        ({"type_filters": ["patient?gender=male"]}, "type_filters"),
        ({"types": ["../admin"]}, "types"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 10_001}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"base_url": "ftp://h"}, "base_url"),
        ({"base_url": "https://h/fhir?x=1"}, "base_url"),
    ],
)
def test_bad_requests_fail_fast_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"base_url": "https://h", "types": ["Patient"], **kwargs}
    with pytest.raises(ValidationError) as caught:
        FhirQuery.build(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_first_url_refuses_types_outside_the_request() -> None:
    query = FhirQuery.build("https://h", ["Patient"])
    with pytest.raises(ValidationError):
        query.first_url("Observation")
    with pytest.raises(ValidationError):
        query.first_url("Patient/../metadata")
