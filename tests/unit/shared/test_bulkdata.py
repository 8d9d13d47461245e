"""The Bulk Data front door's pure logic: kick-off parameters, planning, status, manifest, files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import bulkdata
from shared.bulkdata import BulkDataError, KickoffParams
from shared.contracts import parse_export_request
from shared.errors import TransientError

pytestmark = pytest.mark.unit

SEARCHABLE = ("Patient", "Observation", "Encounter", "Organization")
SOON = datetime(2024, 5, 2, tzinfo=UTC)  # a day after the views below were created


def refusal(pairs: list[tuple[str, str]], *, lenient: bool = False) -> BulkDataError:
    with pytest.raises(BulkDataError) as caught:
        bulkdata.parse_kickoff(pairs, lenient=lenient)
    return caught.value


def named(error: BulkDataError) -> list[str | None]:
    """The parameters the OperationOutcome names, in issue order."""
    outcome = bulkdata.operation_outcome(*error.issues)
    assert outcome["resourceType"] == "OperationOutcome"
    return [(issue.get("expression") or [None])[0] for issue in outcome["issue"]]


# --- kick-off parameters -------------------------------------------------------------------------


def test_no_parameters_means_defaults() -> None:
    assert bulkdata.parse_kickoff([], lenient=False) == KickoffParams()


def test_ig_parameters_parse() -> None:
    params = bulkdata.parse_kickoff(
        [
            ("_type", "Patient, Observation,Patient"),
            ("_type", "Encounter"),
            ("_since", "2024-03-01T00:00:00Z"),
            ("_outputFormat", "application/fhir+ndjson"),
            ("_typeFilter", "Observation?status=final"),
            ("unrelated", "ignored"),
        ],
        lenient=False,
    )
    assert params.types == ("Patient", "Observation", "Encounter")
    assert params.since == "2024-03-01T00:00:00Z"
    assert params.type_filters == ("Observation?status=final",)


@pytest.mark.parametrize("fmt", ["application/fhir+ndjson", "application/ndjson", "ndjson", "NDJSON"])
def test_ndjson_output_formats_are_accepted(fmt: str) -> None:
    bulkdata.parse_kickoff([("_outputFormat", fmt)], lenient=False)


def test_unencoded_plus_signs_survive_the_query() -> None:
    # `?_outputFormat=application/fhir+ndjson&_since=...+02:00` unencoded: "+" arrives as " ".
    pairs = bulkdata.query_pairs(
        "http://h/api/fhir/$export?_outputFormat=application/fhir+ndjson&_since=2024-01-01T00:00:00+02:00"
    )
    assert bulkdata.parse_kickoff(pairs, lenient=False).since == "2024-01-01T00:00:00+02:00"


@pytest.mark.parametrize(
    ("pairs", "parameter", "code"),
    [
        ([("_outputFormat", "text/csv")], "_outputFormat", "not-supported"),
        ([("_outputFormat", "application/fhir+json")], "_outputFormat", "not-supported"),
        ([("_since", "yesterday")], "_since", "invalid"),
        ([("_since", "2024-01-01")], "_since", "invalid"),
        ([("_since", "2024-01-01T00:00:00")], "_since", "invalid"),
        ([("_since", "2024-01-01T00:00:00Z"), ("_since", "2024-02-01T00:00:00Z")], "_since", "invalid"),
        ([("_type", "patient")], "_type", "invalid"),
        ([("_type", "Patient,../x")], "_type", "invalid"),
        ([("_type", "")], "_type", "invalid"),
        ([("_typeFilter", "Observation")], "_typeFilter", "invalid"),
        ([("_typeFilter", "Observation?_count=5")], "_typeFilter", "invalid"),
        ([("_typeFilter", "Observation?a=1,Observation?_sort=x")], "_typeFilter", "invalid"),
        ([("_elements", "Patient.name.given")], "_elements", "invalid"),
        ([("_elements", "id,../x")], "_elements", "invalid"),
        ([("patient", "Group/1")], "patient", "invalid"),
        ([("patient", '{"display": "no reference"}')], "patient", "invalid"),
        ([("_since", "2999-01-01T00:00:00Z")], "_since", "invalid"),
        ([("includeAssociatedData", "LatestProvenanceResources")], "includeAssociatedData", "not-supported"),
    ],
)
def test_each_bad_parameter_is_named(pairs: list[tuple[str, str]], parameter: str, code: str) -> None:
    error = refusal(pairs)
    assert error.status == 400
    assert named(error) == [parameter]
    assert error.issues[0].code == code
    assert parameter in error.issues[0].diagnostics


def test_all_bad_parameters_are_named_at_once() -> None:
    pairs = [("_outputFormat", "csv"), ("_since", "soon"), ("includeAssociatedData", "x"), ("_type", "x")]
    error = refusal(pairs)
    assert sorted(p or "" for p in named(error)) == [
        "_outputFormat",
        "_since",
        "_type",
        "includeAssociatedData",
    ]


def test_lenient_handling_drops_unsupported_parameters() -> None:
    params = bulkdata.parse_kickoff([("includeAssociatedData", "LatestProvenanceResources")], lenient=True)
    assert [(i.expression, i.severity) for i in params.ignored] == [("includeAssociatedData", "warning")]
    # Lenient handling does not excuse malformed supported parameters.
    pairs = [("includeAssociatedData", "x"), ("_outputFormat", "csv")]
    assert named(refusal(pairs, lenient=True)) == ["_outputFormat"]


@pytest.mark.parametrize(
    ("prefer", "lenient"),
    [
        (None, False),
        ("respond-async", False),
        ("respond-async, handling=lenient", True),
        ("handling=strict", False),
        ("respond-async; handling = lenient", True),
    ],
)
def test_prefer_header(prefer: str | None, lenient: bool) -> None:
    assert bulkdata.prefers_lenient(prefer) is lenient


def test_query_pairs_keep_repeats_and_drop_the_function_key() -> None:
    url = "http://127.0.0.1/api/fhir/$export?code=SECRET&_typeFilter=A%3Fx%3D1%2C2&_typeFilter=B%3Fy%3D2"
    assert bulkdata.query_pairs(url) == [("_typeFilter", "A?x=1,2"), ("_typeFilter", "B?y=2")]


def test_parameters_body() -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"},
            {"name": "patient", "valueReference": {"reference": "Patient/1"}},
        ],
    }
    pairs = bulkdata.parameters_pairs(body)
    assert pairs[:2] == [("_type", "Patient"), ("_since", "2024-01-01T00:00:00Z")]
    assert bulkdata.parse_kickoff(pairs, lenient=False).patients == ("1",)
    assert bulkdata.parameters_pairs(None) == []


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"resourceType": "Patient"}, "body"),
        ([], "body"),
        ({"resourceType": "Parameters", "parameter": [{"valueString": "x"}]}, "body"),
        ({"resourceType": "Parameters", "parameter": [{"name": "_type"}]}, "_type"),
    ],
)
def test_bad_parameters_bodies(body: Any, parameter: str) -> None:
    with pytest.raises(BulkDataError) as caught:
        bulkdata.parameters_pairs(body)
    assert named(caught.value) == [parameter]


# --- source facts and planning -----------------------------------------------------------------


def test_searchable_types_come_from_search_type_interactions() -> None:
    capability = {
        "resourceType": "CapabilityStatement",
        "rest": [
            {"mode": "client", "resource": [{"type": "Claim", "interaction": [{"code": "search-type"}]}]},
            {
                "mode": "server",
                "resource": [
                    {"type": "Patient", "interaction": [{"code": "read"}, {"code": "search-type"}]},
                    {"type": "Group", "interaction": [{"code": "read"}]},
                    {"type": "Observation", "interaction": [{"code": "search-type"}]},
                ],
            },
        ],
    }
    assert bulkdata.searchable_types(capability) == ("Patient", "Observation")


def test_group_members() -> None:
    group = {
        "resourceType": "Group",
        "member": [
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "http://h/fhir/Patient/b/_history/2"}},
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "Practitioner/c"}},
            {"entity": {"reference": "Patient/d"}, "inactive": True},
            {"entity": {"display": "no reference"}},
        ],
    }
    assert bulkdata.group_members(group, "g") == ("a", "b")
    with pytest.raises(BulkDataError) as caught:
        bulkdata.group_members({"resourceType": "Group", "actual": False}, "g")
    assert caught.value.status == 422


def test_system_export_defaults_to_every_searchable_type() -> None:
    plan = bulkdata.plan_export(KickoffParams(), level="system", searchable=SEARCHABLE)
    assert plan.types == SEARCHABLE and plan.type_filters == ()


def test_patient_export_defaults_to_compartment_types() -> None:
    plan = bulkdata.plan_export(KickoffParams(), level="patient", searchable=SEARCHABLE)
    assert plan.types == ("Patient", "Observation", "Encounter")


def test_requested_types_must_be_searchable_and_in_the_compartment() -> None:
    with pytest.raises(BulkDataError) as caught:
        bulkdata.plan_export(KickoffParams(types=("Claim",)), level="system", searchable=SEARCHABLE)
    assert named(caught.value) == ["_type"]
    with pytest.raises(BulkDataError) as caught:
        bulkdata.plan_export(KickoffParams(types=("Organization",)), level="patient", searchable=SEARCHABLE)
    assert named(caught.value) == ["_type"]
    plan = bulkdata.plan_export(
        KickoffParams(types=("Organization", "Patient")), level="patient", searchable=SEARCHABLE, lenient=True
    )
    assert plan.types == ("Patient",) and [i.expression for i in plan.ignored] == ["_type"]
    assert "Organization" in plan.ignored[0].diagnostics


def test_type_filters_must_filter_an_exported_type() -> None:
    params = KickoffParams(types=("Patient",), type_filters=("Observation?status=final",))
    with pytest.raises(BulkDataError) as caught:
        bulkdata.plan_export(params, level="system", searchable=SEARCHABLE)
    assert named(caught.value) == ["_typeFilter"]


def test_a_group_export_is_restricted_to_its_members_besides_the_clients_filter() -> None:
    params = KickoffParams(
        types=("Patient", "Observation", "Encounter"), type_filters=("Observation?status=final",)
    )
    plan = bulkdata.plan_export(params, level="group", searchable=SEARCHABLE, members=("p-1", "p-2"))
    assert plan.type_filters == ("Observation?status=final",)
    assert plan.patients == ("p-1", "p-2")
    assert plan.patient_params == {"Patient": "_id", "Observation": "patient", "Encounter": "patient"}


def test_group_without_members_is_refused_and_ten_thousand_are_fine() -> None:
    with pytest.raises(BulkDataError) as caught:
        bulkdata.plan_export(KickoffParams(), level="group", searchable=SEARCHABLE, members=())
    assert caught.value.status == 422
    many = tuple(f"patient-{i:08d}" for i in range(10_000))
    plan = bulkdata.plan_export(KickoffParams(), level="group", searchable=SEARCHABLE, members=many)
    assert plan.patients == many


def test_the_export_body_is_a_valid_job_request() -> None:
    params = bulkdata.parse_kickoff([("_since", "2024-01-01T00:00:00Z")], lenient=False)
    plan = bulkdata.plan_export(params, level="group", searchable=SEARCHABLE, members=("p-1",))
    labels = bulkdata.kickoff_labels(
        "http://127.0.0.1:7071/api/fhir/Group/g1/$export?code=KEY&_type=Patient", "group", "g1"
    )
    body = bulkdata.export_body(
        plan,
        params,
        base_url="http://127.0.0.1:1/fhir",
        container="exports",
        job_id="abc",
        requested_by="a@example.com",
        labels=labels,
    )
    request, _ = parse_export_request(body)
    assert request.destination.path_prefix == "abc"
    assert request.source.since == "2024-01-01T00:00:00Z"
    assert dict(request.labels)["frontdoor"] == "fhir"
    assert (
        dict(request.labels)["fhir_request"]
        == "http://127.0.0.1:7071/api/fhir/Group/g1/$export?_type=Patient"
    )


def test_long_kickoff_urls_are_kept_without_their_query() -> None:
    url = "http://127.0.0.1:7071/api/fhir/$export?_typeFilter=" + "x" * 400
    assert bulkdata.kickoff_labels(url, "system")["fhir_request"] == "http://127.0.0.1:7071/api/fhir/$export"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-requested-by": "ann@example.com", "from": "bob@example.com"}, "ann@example.com"),
        ({"x-requested-by": "not an address", "from": "Bob <bob@example.com>"}, "bob@example.com"),
        ({}, "admin@example.com"),
    ],
)
def test_requester(headers: dict[str, str], expected: str) -> None:
    assert bulkdata.requester(headers, "admin@example.com") == expected


def test_requester_falls_back_to_the_service_address() -> None:
    assert bulkdata.requester({"from": "nobody"}, None) == bulkdata.SERVICE_ADDRESS


# --- reading the source ----------------------------------------------------------------------------


def client(handler: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_read_group_not_found_is_404() -> None:
    not_found = httpx.Response(404, json={"resourceType": "OperationOutcome"})
    with client(lambda request: not_found) as http, pytest.raises(BulkDataError) as caught:
        bulkdata.read_group(http, "http://src/fhir", "g1")
    assert caught.value.status == 404 and "Group/g1" in caught.value.issues[0].diagnostics


def test_read_group_refuses_ids_that_are_not_fhir_ids() -> None:
    with client(lambda request: httpx.Response(500)) as http, pytest.raises(BulkDataError) as caught:
        bulkdata.read_group(http, "http://src/fhir", "../metadata")
    assert caught.value.status == 400


def test_source_outages_are_transient_and_refusals_are_502() -> None:
    with client(lambda request: httpx.Response(503)) as http, pytest.raises(TransientError):
        bulkdata.read_capability(http, "http://src/fhir")
    with client(lambda request: httpx.Response(401)) as http, pytest.raises(BulkDataError) as caught:
        bulkdata.read_capability(http, "http://src/fhir")
    assert caught.value.status == 502


# --- status, manifest, files -------------------------------------------------------------------


def view(state: str = "running", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "job1",
        "state": state,
        "created": "2024-05-01T10:00:00Z",
        "cancel_requested": False,
        "labels": {
            "frontdoor": "fhir",
            "fhir_request": "http://h/api/fhir/$export?_type=Patient,Observation",
        },
        "request": {
            "source": {"types": ["Patient", "Observation"]},
            "destination": {"container": "exports", "path_prefix": "job1"},
        },
        "progress": {
            "Patient": {"state": "succeeded", "resources": 1200},
            "Observation": {"state": "running", "resources": 34},
        },
        "last_error": None,
        "output": [
            {"type": "Observation", "name": "Observation-2.ndjson", "sequence": 2, "count": 5, "url": "blob"},
            {
                "type": "Observation",
                "name": "Observation-1.ndjson",
                "sequence": 1,
                "count": 29,
                "url": "blob",
            },
            {"type": "Patient", "name": "Patient-1.ndjson", "sequence": 1, "count": 1200, "url": "blob"},
        ],
    }
    base.update(changes)
    return base


def file_url(name: str) -> str:
    return f"http://h/api/fhir/$export-file/job1/{name}"


def test_progress_text() -> None:
    assert bulkdata.progress_text(view()) == "running: 1 of 2 types done, 1,234 resources"
    assert bulkdata.progress_text(view("queued")) == "queued"
    assert bulkdata.progress_text(view("retrying")).startswith("retrying after an error: 1 of 2")


@given(
    st.sampled_from(["queued", "running", "retrying"]),
    st.dictionaries(
        st.text(min_size=1, max_size=64),
        st.fixed_dictionaries(
            {
                "state": st.sampled_from(["queued", "running", "succeeded"]),
                "resources": st.integers(0, 10**15),
            }
        ),
        max_size=300,
    ),
)
def test_progress_text_is_always_under_100_characters(state: str, progress: dict[str, Any]) -> None:
    assert len(bulkdata.progress_text(view(state, progress=progress))) < 100


@pytest.mark.parametrize("state", ["queued", "running", "retrying"])
def test_pending_jobs_answer_202_with_progress_and_retry_after(state: str) -> None:
    answer = bulkdata.status_answer("job1", view(state), file_url)
    assert answer.status == 202 and answer.body is None
    assert 0 < len(answer.headers["X-Progress"]) < 100
    assert int(answer.headers["Retry-After"]) >= 1


def test_manifest() -> None:
    answer = bulkdata.status_answer("job1", view("succeeded"), file_url, now=SOON)
    assert answer.status == 200
    assert answer.headers == {"Expires": "Wed, 08 May 2024 10:00:00 GMT"}  # created + 7 days
    assert answer.body == {
        "transactionTime": "2024-05-01T10:00:00Z",
        "request": "http://h/api/fhir/$export?_type=Patient,Observation",
        "requiresAccessToken": True,
        "output": [
            {"type": "Patient", "url": file_url("Patient-1.ndjson"), "count": 1200},
            {"type": "Observation", "url": file_url("Observation-1.ndjson"), "count": 29},
            {"type": "Observation", "url": file_url("Observation-2.ndjson"), "count": 5},
        ],
        "error": [],
    }


def test_failed_job_answers_500_with_its_error() -> None:
    answer = bulkdata.status_answer(
        "job1", view("failed", last_error="Patient: HTTP 400 bad filter"), file_url
    )
    assert answer.status == 500 and answer.body is not None
    assert answer.body["resourceType"] == "OperationOutcome"
    assert "HTTP 400 bad filter" in answer.body["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "gone",
    [None, view("cancelled"), view("running", cancel_requested=True), view("succeeded", labels={})],
    ids=["unknown", "cancelled", "deleted", "not-a-frontdoor-job"],
)
def test_unknown_deleted_and_foreign_jobs_are_404(gone: dict[str, Any] | None) -> None:
    answer = bulkdata.status_answer("job1", gone, file_url)
    assert answer.status == 404 and answer.body is not None
    assert answer.body["issue"][0]["code"] == "not-found"
    assert bulkdata.export_file(gone, "Patient-1.ndjson", now=SOON) is None


def test_export_file_serves_only_the_jobs_listed_files() -> None:
    done = view("succeeded")
    assert bulkdata.export_file(done, "Patient-1.ndjson", now=SOON) == ("exports", "job1/Patient-1.ndjson")
    names = ("Patient-9.ndjson", "../other/Patient-1.ndjson", "Patient-1.ndjson/..", "x", "", "errors.ndjson")
    for name in names:
        assert bulkdata.export_file(done, name, now=SOON) is None
    assert bulkdata.export_file(view("running"), "Patient-1.ndjson", now=SOON) is None


# --- IG v2 conformance: headers, _since, _typeFilter OR, _elements, patient, lenient, Expires -----

FHIR_HEADERS = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
NOW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        (FHIR_HEADERS, []),
        ({"accept": "application/fhir+json;q=0.9, */*", "prefer": "respond-async; handling=lenient"}, []),
        ({"Prefer": "respond-async"}, ["Accept"]),
        ({"Accept": "application/json", "Prefer": "respond-async"}, ["Accept"]),
        ({"Accept": "application/fhir+json"}, ["Prefer"]),
        ({"Accept": "application/fhir+json", "Prefer": "handling=lenient"}, ["Prefer"]),
        ({}, ["Accept", "Prefer"]),
    ],
)
def test_kickoff_headers_are_required(headers: dict[str, str], refused: list[str]) -> None:
    if not refused:
        bulkdata.parse_kickoff([], lenient=False, headers=headers)
        return
    with pytest.raises(BulkDataError) as caught:
        bulkdata.parse_kickoff([("_outputFormat", "csv")], lenient=False, headers=headers)
    assert named(caught.value) == [*refused, "_outputFormat"]  # headers and parameters at once


def test_since_in_the_future_is_refused_against_the_given_clock() -> None:
    assert bulkdata.parse_kickoff([("_since", "2024-05-31T23:59:59Z")], lenient=False, now=NOW).since
    with pytest.raises(BulkDataError) as caught:
        bulkdata.parse_kickoff([("_since", "2024-06-01T00:00:01Z")], lenient=True, now=NOW)
    assert named(caught.value) == ["_since"] and "future" in caught.value.issues[0].diagnostics


def test_type_filters_comma_form_and_repeats_are_separate_queries() -> None:
    params = bulkdata.parse_kickoff(
        [
            ("_typeFilter", "Patient?gender=male,Patient?gender=female"),
            ("_typeFilter", "Patient?active=true"),
            ("_typeFilter", "Patient?gender=male"),
        ],
        lenient=False,
    )
    assert params.type_filters == ("Patient?gender=male", "Patient?gender=female", "Patient?active=true")
    plan = bulkdata.plan_export(params, level="system", searchable=SEARCHABLE)
    assert plan.type_filters == params.type_filters
    body = export_body_of(plan, params)
    request, _ = parse_export_request(body)
    assert request.source.type_filters == params.type_filters


def export_body_of(plan: bulkdata.ExportPlan, params: KickoffParams) -> dict[str, Any]:
    return bulkdata.export_body(
        plan,
        params,
        base_url="http://127.0.0.1:1/fhir",
        container="exports",
        job_id="abc",
        requested_by="a@example.com",
        labels=bulkdata.kickoff_labels("http://h/api/fhir/$export", "system", errors=len(plan.ignored)),
    )


def test_elements_go_to_the_request_when_the_source_can_search_with_them() -> None:
    params = bulkdata.parse_kickoff([("_elements", "Patient.gender, id,Encounter.status")], lenient=False)
    assert params.elements == ("Patient.gender", "id", "Encounter.status")
    plan = bulkdata.plan_export(
        params,
        level="system",
        searchable=SEARCHABLE,
        elements_types=SEARCHABLE,
    )
    assert plan.elements == params.elements
    request, _ = parse_export_request(export_body_of(plan, params))
    assert request.source.elements == params.elements


def test_elements_the_source_cannot_search_with_are_refused_or_ignored_when_lenient() -> None:
    params = bulkdata.parse_kickoff(
        [("_elements", "Patient.gender"), ("_type", "Patient,Encounter")], lenient=False
    )
    with pytest.raises(BulkDataError) as caught:
        bulkdata.plan_export(params, level="system", searchable=SEARCHABLE, elements_types=("Encounter",))
    assert named(caught.value) == ["_elements"] and "Patient" in caught.value.issues[0].diagnostics
    plan = bulkdata.plan_export(
        params, level="system", searchable=SEARCHABLE, elements_types=("Encounter",), lenient=True
    )
    assert plan.elements == () and [i.expression for i in plan.ignored] == ["_elements"]
    # Only types the elements apply to matter: Encounter can, and `Patient.gender` is not for it.
    only = bulkdata.parse_kickoff([("_elements", "Patient.gender"), ("_type", "Encounter")], lenient=False)
    assert bulkdata.plan_export(only, level="system", searchable=SEARCHABLE, elements_types=()).elements


def test_elements_searchable_reads_the_capability_statement() -> None:
    capability = {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": "Patient", "searchParam": [{"name": "_elements", "type": "special"}]},
                    {"type": "Observation", "searchParam": [{"name": "status", "type": "token"}]},
                ],
            }
        ],
    }
    assert bulkdata.elements_searchable(capability, ["Patient", "Observation"]) == ("Patient",)
    capability["rest"][0]["searchParam"] = [{"name": "_elements"}]
    assert bulkdata.elements_searchable(capability, ["Patient", "Observation"]) == ("Patient", "Observation")
    assert bulkdata.elements_searchable({"resourceType": "CapabilityStatement"}, ["Patient"]) == ()


def test_patient_parameter_restricts_patient_exports() -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/p-2"}},
            {"name": "patient", "valueReference": {"reference": "http://h/fhir/Patient/p-1/_history/3"}},
            {"name": "patient", "valueReference": {"reference": "Patient/p-2"}},
        ],
    }
    params = bulkdata.parse_kickoff(bulkdata.parameters_pairs(body), lenient=False)
    assert params.patients == ("p-2", "p-1")
    plan = bulkdata.plan_export(params, level="patient", searchable=SEARCHABLE)
    assert plan.patients == ("p-2", "p-1")
    request, _ = parse_export_request(export_body_of(plan, params))
    assert request.source.patient_count == 2
    assert request.source.patient_params == {
        "Patient": "_id",
        "Observation": "patient",
        "Encounter": "patient",
    }
    assert "p-1" not in json.dumps(request.to_dict())  # the ids go to the work store, not the request
    unrestricted = bulkdata.plan_export(KickoffParams(), level="patient", searchable=SEARCHABLE)
    assert unrestricted.patients is None and unrestricted.patient_params == {}


def test_patient_parameter_narrows_a_group_and_is_not_for_system_exports() -> None:
    group = ("p-1", "p-2", "p-3")
    params = KickoffParams(patients=("p-3", "p-1"))
    assert bulkdata.plan_export(params, level="group", searchable=SEARCHABLE, members=group).patients == (
        "p-3",
        "p-1",
    )
    outside = KickoffParams(patients=("p-1", "p-9"))
    with pytest.raises(BulkDataError) as caught:
        bulkdata.plan_export(outside, level="group", searchable=SEARCHABLE, members=group)
    assert named(caught.value) == ["patient"] and "p-9" in caught.value.issues[0].diagnostics
    lenient = bulkdata.plan_export(outside, level="group", searchable=SEARCHABLE, members=group, lenient=True)
    assert lenient.patients == ("p-1",) and [i.expression for i in lenient.ignored] == ["patient"]
    with pytest.raises(BulkDataError) as caught:
        bulkdata.plan_export(KickoffParams(patients=("p-9",)), level="group", searchable=SEARCHABLE,
                             members=group, lenient=True)  # fmt: skip
    assert caught.value.status == 422  # nobody left: never an unrestricted export
    with pytest.raises(BulkDataError) as caught:
        bulkdata.plan_export(params, level="system", searchable=SEARCHABLE)
    assert named(caught.value) == ["patient"]


def test_what_lenient_handling_ignores_becomes_the_error_file() -> None:
    params = bulkdata.parse_kickoff(
        [("includeAssociatedData", "LatestProvenanceResources"), ("_type", "Patient,Claim")], lenient=True
    )
    plan = bulkdata.plan_export(params, level="system", searchable=SEARCHABLE, lenient=True)
    data = bulkdata.error_file(plan)
    assert data is not None
    outcomes = [json.loads(line) for line in data.splitlines()]
    assert [o["resourceType"] for o in outcomes] == ["OperationOutcome", "OperationOutcome"]
    assert [o["issue"][0]["expression"] for o in outcomes] == [["includeAssociatedData"], ["_type"]]
    assert {o["issue"][0]["severity"] for o in outcomes} == {"warning"}
    labels = bulkdata.kickoff_labels("http://h/api/fhir/$export", "system", errors=len(plan.ignored))
    assert labels["fhir_errors"] == "2"
    assert (
        bulkdata.error_file(bulkdata.plan_export(KickoffParams(), level="system", searchable=SEARCHABLE))
        is None
    )
    done = view("succeeded", labels={**view()["labels"], **labels})
    answer = bulkdata.status_answer("job1", done, file_url, now=SOON)
    assert answer.body is not None
    assert answer.body["error"] == [
        {"type": "OperationOutcome", "url": file_url("errors.ndjson"), "count": 2}
    ]
    assert bulkdata.export_file(done, "errors.ndjson", now=SOON) == ("exports", "job1/errors.ndjson")


def test_completed_exports_expire_after_the_retention() -> None:
    done = view("succeeded", finished="2024-05-03T08:00:00Z")
    expires = datetime(2024, 5, 10, 8, tzinfo=UTC)
    assert bulkdata.expires(done) == expires == datetime(2024, 5, 3, 8, tzinfo=UTC) + bulkdata.FILE_RETENTION
    before = bulkdata.status_answer("job1", done, file_url, now=expires - timedelta(seconds=1))
    assert before.status == 200 and before.headers["Expires"] == "Fri, 10 May 2024 08:00:00 GMT"
    after = bulkdata.status_answer("job1", done, file_url, now=expires)
    assert after.status == 404
    assert bulkdata.export_file(done, "Patient-1.ndjson", now=expires) is None
    assert (
        bulkdata.status_answer("job1", view("running"), file_url, now=expires).status == 202
    )  # not yet done
