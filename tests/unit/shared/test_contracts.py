"""Export request contracts: strict validation naming the field, round trips, secrets kept apart."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import (
    BlobDestinationSpec,
    ExportOptions,
    ExportRequest,
    FhirSourceSpec,
    SubmittedSecrets,
    parse_export_request,
    with_secret_names,
)
from shared.errors import PermanentError, ValidationError
from shared.retry import RetryPolicy

pytestmark = pytest.mark.unit

AUTH_VALUE = "bearer-value-3f7c"  # noqa: S105 - test data
DEST_VALUE = "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=c2VjcmV0LWtleQ=="


def api_body() -> dict[str, Any]:
    return {
        "source": {
            "kind": "fhir",
            "base_url": "https://127.0.0.1:8443/fhir",
            "types": ["Patient", "Observation"],
            "since": "2024-01-31T00:00:00Z",
            "type_filters": ["Patient?active=true"],
            "page_size": 500,
            "auth_secret": AUTH_VALUE,
        },
        "destination": {"kind": "blob", "container": "exports", "path_prefix": "run/1", "secret": DEST_VALUE},
        "options": {
            "max_file_bytes": 1024 * 1024,
            "commit_every_pages": 5,
            "parallel_types": 2,
            "failure_threshold": 4,
            "retry": {"first_retry_interval_ms": 1000, "max_attempts": 3},
        },
        "requested_by": "ana@example.org",
        "labels": {"team": "research", "ticket": "42"},
    }


def test_api_body_parses_into_typed_request_and_separate_secrets() -> None:
    request, secrets = parse_export_request(api_body())
    assert request.source == FhirSourceSpec(
        base_url="https://127.0.0.1:8443/fhir",
        types=("Patient", "Observation"),
        since="2024-01-31T00:00:00Z",
        type_filters=("Patient?active=true",),
        page_size=500,
    )
    assert request.destination == BlobDestinationSpec(container="exports", path_prefix="run/1")
    assert request.options == ExportOptions(
        max_file_bytes=1024 * 1024,
        commit_every_pages=5,
        parallel_types=2,
        failure_threshold=4,
        retry=RetryPolicy(first_retry_interval_ms=1000, max_attempts=3),
    )
    assert request.labels == (("team", "research"), ("ticket", "42"))
    assert secrets == SubmittedSecrets(source_auth=AUTH_VALUE, destination=DEST_VALUE)


def test_defaults_apply_when_options_are_left_out() -> None:
    body = api_body()
    del body["options"], body["labels"], body["source"]["page_size"], body["destination"]["path_prefix"]
    request, _ = parse_export_request(body)
    assert request.options == ExportOptions()
    assert request.options.max_file_bytes == 64 * 1024 * 1024
    assert (request.options.commit_every_pages, request.options.parallel_types) == (10, 4)
    assert request.options.failure_threshold == 3
    assert request.options.retry == RetryPolicy(first_retry_interval_ms=5000, max_attempts=5)
    assert request.source.page_size == 1000
    assert request.destination.path_prefix == ""
    assert request.labels == ()


def test_settings_defaults_fill_base_url_and_container() -> None:
    body = api_body()
    del body["source"]["base_url"], body["destination"]["container"]
    request, _ = parse_export_request(
        body, default_base_url="http://127.0.0.1:9/fhir", default_container="fallback"
    )
    assert request.source.base_url == "http://127.0.0.1:9/fhir"
    assert request.destination.container == "fallback"
    with pytest.raises(ValidationError) as info:
        parse_export_request(body)
    assert info.value.field == "source.base_url"


def test_secret_values_never_reach_the_record_or_a_repr() -> None:
    request, secrets = parse_export_request(api_body())
    named = with_secret_names(
        request, auth_secret_name="export-j1-source-auth-1", destination_secret_name="d-1"
    )
    for text in (json.dumps(request.to_dict()), json.dumps(named.to_dict()), repr(named), repr(secrets)):
        assert AUTH_VALUE not in text
        assert DEST_VALUE not in text
    assert named.to_dict()["source"]["auth_secret_name"] == "export-j1-source-auth-1"
    assert named.to_dict()["destination"]["secret_name"] == "d-1"


def test_record_round_trips_through_json() -> None:
    request, _ = parse_export_request(api_body())
    named = with_secret_names(request, auth_secret_name="a-1", destination_secret_name=None)
    data = json.loads(json.dumps(named.to_dict()))
    assert data["schema_version"] == 1
    assert ExportRequest.from_dict(data) == named


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = body
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = body
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set("surprise", 1), "surprise"),
        (_set("source.extra", 1), "source.extra"),
        (_set("destination.extra", 1), "destination.extra"),
        (_set("options.extra", 1), "options.extra"),
        (_set("options.retry.backoff", 2), "options.retry.backoff"),
        # The API takes values, never names: a client must not point a job at a stored secret.
        (_set("source.auth_secret_name", "someone-elses"), "source.auth_secret_name"),
        (_set("destination.secret_name", "someone-elses"), "destination.secret_name"),
    ],
)
def test_unknown_fields_are_rejected_with_their_path(
    mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    body = api_body()
    mutate(body)
    with pytest.raises(ValidationError) as info:
        parse_export_request(body)
    assert info.value.field == field
    assert "unknown field" in str(info.value)


BAD_FIELDS = [
    (_set("source.kind", "sql"), "source.kind"),
    (_set("source.base_url", "ftp://127.0.0.1/fhir"), "source.base_url"),
    (_set("source.base_url", "not a url"), "source.base_url"),
    (_set("source.base_url", "https://user:pw@127.0.0.1/fhir"), "source.base_url"),
    (_set("source.base_url", "http://[::1/fhir"), "source.base_url"),
    (_set("source.base_url", "http://127.0.0.1:port/fhir"), "source.base_url"),
    (_delete("source.types"), "source.types"),
    (_set("source.types", []), "source.types"),
    (_set("source.types", "Patient"), "source.types"),
    (_set("source.types", ["Patient", "patient"]), "source.types[1]"),
    (_set("source.types", ["Patient", "Patient"]), "source.types[1]"),
    (_set("source.types", ["Patient", 7]), "source.types[1]"),
    (_set("source.since", "2024-01-31"), "source.since"),
    (_set("source.since", "2024-01-31T00:00:00"), "source.since"),
    (_set("source.since", "2024-13-31T00:00:00Z"), "source.since"),
    (_set("source.type_filters", ["Encounter?status=finished"]), "source.type_filters[0]"),
    (_set("source.type_filters", ["Patient"]), "source.type_filters[0]"),
    (_set("source.page_size", 0), "source.page_size"),
    (_set("source.page_size", 10_001), "source.page_size"),
    (_set("source.page_size", "100"), "source.page_size"),
    (_set("source.page_size", True), "source.page_size"),
    (_set("source.auth_secret", ""), "source.auth_secret"),
    (_set("source.auth_secret", "x" * 30_000), "source.auth_secret"),
    (_set("destination.kind", "s3"), "destination.kind"),
    (_set("destination.container", "Exports"), "destination.container"),
    (_set("destination.container", "ex--ports"), "destination.container"),
    (_set("destination.container", "ex"), "destination.container"),
    (_set("destination.path_prefix", "/abs"), "destination.path_prefix"),
    (_set("destination.path_prefix", "a/../b"), "destination.path_prefix"),
    (_set("destination.secret", 42), "destination.secret"),
    (_set("options", []), "options"),
    (_set("options.max_file_bytes", 1023), "options.max_file_bytes"),
    (_set("options.commit_every_pages", 0), "options.commit_every_pages"),
    (_set("options.parallel_types", 0), "options.parallel_types"),
    (_set("options.parallel_types", 17), "options.parallel_types"),
    (_set("options.failure_threshold", 0), "options.failure_threshold"),
    (_set("options.retry.first_retry_interval_ms", 1.5), "options.retry.first_retry_interval_ms"),
    (_set("options.retry.max_attempts", 0), "options.retry.max_attempts"),
    (_delete("requested_by"), "requested_by"),
    (_set("requested_by", "not-an-email"), "requested_by"),
    (_set("requested_by", "a@b"), "requested_by"),
    (_set("labels", {"bad key": "x"}), "labels.bad key"),
    (_set("labels", {"k": 1}), "labels.k"),
    (_set("labels", {f"k{i}": "v" for i in range(21)}), "labels"),
    (_set("schema_version", 2), "schema_version"),
    (_delete("source"), "source"),
    (_set("destination", "blob"), "destination"),
]


@pytest.mark.parametrize(("mutate", "field"), BAD_FIELDS)
def test_each_bad_field_is_named(mutate: Callable[[dict[str, Any]], None], field: str) -> None:
    body = api_body()
    mutate(body)
    with pytest.raises(ValidationError) as info:
        parse_export_request(body)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, PermanentError)  # 400-able: retrying cannot help


def test_validation_messages_never_quote_secret_values() -> None:
    body = api_body()
    body["destination"]["secret"] = "x" * 30_000
    with pytest.raises(ValidationError) as info:
        parse_export_request(body)
    assert "xxxx" not in str(info.value)


def test_body_must_be_an_object() -> None:
    with pytest.raises(ValidationError) as info:
        parse_export_request([])  # type: ignore[arg-type]
    assert info.value.field == "body"


def test_record_shape_rejects_secret_values() -> None:
    request, _ = parse_export_request(api_body())
    data = request.to_dict()
    data["source"]["auth_secret"] = AUTH_VALUE
    with pytest.raises(ValidationError) as info:
        ExportRequest.from_dict(data)
    assert info.value.field == "source.auth_secret"


def test_with_secret_names_checks_key_vault_rules() -> None:
    request, _ = parse_export_request(api_body())
    with pytest.raises(ValidationError) as info:
        with_secret_names(request, auth_secret_name="has_underscore", destination_secret_name=None)
    assert info.value.field == "source.auth_secret_name"


def test_input_is_not_mutated() -> None:
    body = api_body()
    before = copy.deepcopy(body)
    parse_export_request(body)
    assert body == before


def test_blob_name_joins_the_prefix() -> None:
    assert (
        BlobDestinationSpec(container="exports", path_prefix="a/b").blob_name("P-1.ndjson")
        == "a/b/P-1.ndjson"
    )
    assert BlobDestinationSpec(container="exports").blob_name("P-1.ndjson") == "P-1.ndjson"


# --- property: any valid request survives to_dict/from_dict -----------------------------------

_types = st.lists(st.from_regex(r"[A-Z][a-z]{2,12}", fullmatch=True), min_size=1, max_size=5, unique=True)
_secret_names = st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,40}", fullmatch=True)


@st.composite
def requests(draw: st.DrawFn) -> ExportRequest:
    types = draw(_types)
    count = draw(st.sampled_from([0, 1, 10_000]))
    source = FhirSourceSpec(
        base_url=draw(st.sampled_from(["http://127.0.0.1:8080/fhir", "https://fhir.example.org/r4"])),
        types=tuple(types),
        since=draw(st.none() | st.just("2023-06-01T12:30:00.123+02:00")),
        # Unique: reading a request drops repeated filters (one search each would find the same).
        type_filters=tuple(
            f"{t}?_id=x" for t in draw(st.lists(st.sampled_from(types), max_size=2, unique=True))
        ),
        page_size=draw(st.integers(1, 10_000)),
        auth_secret_name=draw(_secret_names),
        elements=tuple(draw(st.lists(st.sampled_from(["id", "name", f"{types[0]}.status"]), unique=True))),
        patient_count=count,
        patient_search=tuple((t, "patient") for t in types) if count else (),
    )
    destination = BlobDestinationSpec(
        container=draw(st.from_regex(r"[a-z0-9]{3,20}", fullmatch=True)),
        path_prefix=draw(st.sampled_from(["", "a", "a/b-c/d"])),
        secret_name=draw(_secret_names),
    )
    options = ExportOptions(
        max_file_bytes=draw(st.integers(1024, 2**34)),
        commit_every_pages=draw(st.integers(1, 10_000)),
        parallel_types=draw(st.integers(1, 16)),
        failure_threshold=draw(st.integers(1, 100)),
        retry=RetryPolicy(draw(st.integers(100, 3_600_000)), draw(st.integers(1, 20))),
    )
    labels = draw(
        st.dictionaries(
            st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.text(min_size=1, max_size=20), max_size=20
        )
    )
    return ExportRequest(
        source=source,
        destination=destination,
        options=options,
        requested_by="someone@example.org",
        labels=tuple(sorted(labels.items())),
    )


@given(requests())
def test_any_valid_request_round_trips(request: ExportRequest) -> None:
    assert ExportRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


# --- ORed type filters, _elements, patient restriction -----------------------------------------


def test_type_filters_comma_form_is_split_into_queries() -> None:
    body = api_body()
    body["source"]["type_filters"] = ["Patient?gender=male,Patient?gender=female", "Observation?status=final"]
    request, _ = parse_export_request(body)
    assert request.source.type_filters == (
        "Patient?gender=male",
        "Patient?gender=female",
        "Observation?status=final",
    )
    body["source"]["type_filters"] = ["Patient?gender=male,Encounter?status=finished"]
    with pytest.raises(ValidationError) as info:
        parse_export_request(body)
    assert info.value.field == "source.type_filters[0]"


def test_elements_and_patients_round_trip_and_old_records_lack_them() -> None:
    body = api_body()
    body["source"]["elements"] = ["id", "Patient.gender"]
    body["source"]["patients"] = {"count": 3, "search_params": {"Patient": "_id", "Observation": "patient"}}
    request, _ = parse_export_request(body)
    assert request.source.elements == ("id", "Patient.gender")
    assert request.source.patient_count == 3
    assert request.source.patient_params == {"Patient": "_id", "Observation": "patient"}
    assert ExportRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    old = request.to_dict()
    del old["source"]["elements"], old["source"]["patients"]
    source = ExportRequest.from_dict(old).source
    assert (source.elements, source.patient_count, source.patient_params) == ((), 0, {})


@pytest.mark.parametrize(
    ("patients", "field"),
    [
        (
            {"count": 0, "search_params": {"Patient": "_id", "Observation": "patient"}},
            "source.patients.count",
        ),
        ({"count": 1, "search_params": {"Patient": "_id"}}, "source.patients.search_params.Observation"),
        (
            {"count": 1, "search_params": {"Patient": "_id", "Observation": "a b"}},
            "source.patients.search_params.Observation",
        ),  # fmt: skip
        (
            {"count": 1, "search_params": {"Patient": "_id", "Observation": "patient", "Claim": "patient"}},
            "source.patients.search_params.Claim",
        ),  # fmt: skip
    ],
)
def test_bad_patient_restrictions_name_the_field(patients: dict[str, Any], field: str) -> None:
    body = api_body()
    body["source"]["patients"] = patients
    with pytest.raises(ValidationError) as info:
        parse_export_request(body)
    assert info.value.field == field


def test_bad_elements_name_the_field() -> None:
    body = api_body()
    body["source"]["elements"] = ["id", "Patient.name.given"]
    with pytest.raises(ValidationError) as info:
        parse_export_request(body)
    assert info.value.field == "source.elements[1]"


def test_request_json_schema_is_producible_for_the_openapi_document() -> None:
    schema = ExportRequest.model_json_schema()
    assert set(schema["required"]) >= {"source", "destination", "requested_by"}
    assert schema["additionalProperties"] is False
    source = schema["$defs"]["FhirSourceSpec"]
    assert source["properties"]["page_size"]["maximum"] == 10_000
    assert schema["properties"]["labels"]["type"] == "object"
    json.dumps(schema)  # plain JSON, ready to embed
