"""A type's searches: ORed `_typeFilter`s x patient chunks, `_elements`, SUBSETTED, de-duplication."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ValidationError
from shared.sources import Page, Searches, member_chunks, parse_type_filters, split_type_filters
from shared.sources._bundle import SUBSETTED_TAG
from shared.sources._query import MEMBER_CHUNK_CHARS, FhirQuery, elements_for
from tests.unit.shared.sources.fakes import always, bundle, entry, make_source, resource

pytestmark = pytest.mark.unit


def params_of(url: str) -> list[tuple[str, str]]:
    return list(httpx.URL(url).params.multi_items())


# --- _typeFilter: several are ORed, one search each -----------------------------------------------


@pytest.mark.parametrize(
    ("given", "queries"),
    [
        (["Patient?gender=male,Patient?gender=female"], ["Patient?gender=male", "Patient?gender=female"]),
        (["Patient?gender=male,female"], ["Patient?gender=male,female"]),  # a value list, one query
        (
            ["Patient?gender=male", "Patient?gender=male,Observation?status=final"],
            ["Patient?gender=male", "Observation?status=final"],
        ),  # fmt: skip
    ],
)
def test_comma_separated_filters_are_split_at_each_new_query(given: list[str], queries: list[str]) -> None:
    assert split_type_filters(given) == queries


def test_several_filters_of_one_type_are_kept_apart_and_repeats_dropped() -> None:
    parsed = parse_type_filters(
        ["Patient?gender=male&active=true", "Patient?gender=female,Patient?gender=male&active=true"],
        ["Patient"],
    )
    assert parsed == {"Patient": ((("gender", "male"), ("active", "true")), (("gender", "female"),))}


def test_each_filter_is_one_search() -> None:
    query = FhirQuery.build(
        "https://h", ["Patient", "Observation"], type_filters=["Patient?gender=male,Patient?active=true"]
    )
    assert query.searches("Patient") == Searches(count=2, overlap=2)
    assert query.searches("Observation") == Searches(count=1, overlap=1)
    assert params_of(query.first_url("Patient", 0))[1:] == [("gender", "male")]
    assert params_of(query.first_url("Patient", 1))[1:] == [("active", "true")]
    with pytest.raises(ValidationError, match="2 searches"):
        query.first_url("Patient", 2)


# --- patient chunks ---------------------------------------------------------------------------------


def ids(n: int) -> list[str]:
    return [f"patient-{i:08d}" for i in range(n)]


@given(st.lists(st.from_regex(r"[A-Za-z0-9.-]{1,64}", fullmatch=True), max_size=400), st.integers(64, 4000))
def test_chunks_keep_every_id_once_in_order_within_the_budget(members: list[str], budget: int) -> None:
    chunks = member_chunks(members, budget)
    assert [i for chunk in chunks for i in chunk.split(",")] == members if members else chunks == ()
    for chunk in chunks:
        assert len(quote(chunk, safe="")) <= budget or "," not in chunk  # one id longer than the budget


def test_ten_thousand_members_make_bounded_urls() -> None:
    query = FhirQuery.build(
        "https://fhir.example.org/r4",
        ["Patient", "Observation"],
        since="2024-01-01T00:00:00Z",
        patient_params={"Patient": "_id", "Observation": "patient"},
        patients=ids(10_000),
    )
    searches = query.searches("Observation")
    assert searches.overlap == 1 and 40 <= searches.count <= 100
    urls = [query.first_url("Observation", q) for q in range(searches.count)]
    assert max(len(u) for u in urls) < MEMBER_CHUNK_CHARS + 200
    sent = [i for u in urls for i in dict(params_of(u))["patient"].split(",")]
    assert sent == ids(10_000)
    assert dict(params_of(query.first_url("Patient", 3)))["_id"].split(",")[0] in ids(10_000)


def test_filters_times_chunks_run_chunk_by_chunk() -> None:
    query = FhirQuery.build(
        "https://h",
        ["Observation"],
        type_filters=["Observation?status=final", "Observation?status=amended"],
        patient_params={"Observation": "patient"},
        patients=ids(400),
    )
    searches = query.searches("Observation")
    chunks = len(member_chunks(ids(400)))
    assert searches == Searches(count=2 * chunks, overlap=2)
    described = [
        (dict(params_of(query.first_url("Observation", q)))["status"],
         dict(params_of(query.first_url("Observation", q)))["patient"].split(",")[0])
        for q in range(4)
    ]  # fmt: skip
    second_chunk_first = member_chunks(ids(400))[1].split(",")[0]
    assert described == [
        ("final", "patient-00000000"),
        ("amended", "patient-00000000"),
        ("final", second_chunk_first),
        ("amended", second_chunk_first),
    ]


def test_searches_say_which_earlier_searches_can_overlap() -> None:
    searches = Searches(count=6, overlap=2)  # 3 chunks x 2 filters
    assert [list(searches.earlier_in_run(q)) for q in range(6)] == [[], [0], [], [2], [], [4]]
    assert [searches.feeds_later(q) for q in range(6)] == [True, False, True, False, True, False]
    assert [searches.next_query(q) for q in range(6)] == [1, 2, 3, 4, 5, None]
    single = Searches(count=3, overlap=1)  # chunks only: never overlap, nothing stored
    assert not any(single.earlier_in_run(q) or single.feeds_later(q) for q in range(3))


# --- _elements and SUBSETTED --------------------------------------------------------------------------


def test_elements_apply_to_all_types_or_to_the_named_one() -> None:
    elements = ["id", "Patient.gender", "Observation.status", "Patient.gender"]
    assert elements_for(elements, "Patient") == ("id", "gender")
    assert elements_for(elements, "Encounter") == ("id",)
    assert elements_for(["Patient.name"], "Encounter") == ()
    query = FhirQuery.build("https://h", ["Patient", "Encounter"], elements=["Patient.gender"])
    assert ("_elements", "gender") in params_of(query.first_url("Patient"))
    assert all(name != "_elements" for name, _ in params_of(query.first_url("Encounter")))


def test_subsetted_resources_are_tagged_once() -> None:
    tagged = resource("Patient", "b", meta={"tag": [dict(SUBSETTED_TAG)]})
    page_body = bundle([entry(resource("Patient", "a", meta={"versionId": "1"})), entry(tagged)])
    source, recorder = make_source(
        always(200, page_body), types=("Patient", "Observation"), elements=["Patient.gender"]
    )
    page = source.fetch_page("Patient", None)
    lines = [json.loads(line) for line in page.ndjson.splitlines()]
    assert [line["meta"]["tag"] for line in lines] == [[SUBSETTED_TAG], [SUBSETTED_TAG]]
    assert lines[0]["meta"]["versionId"] == "1"
    assert page.ids == ("a", "b")
    assert ("_elements", "gender") in recorder.requests[0].url.params.multi_items()
    untouched = resource("Observation", "o", meta={"versionId": "1"})
    other, _ = make_source(always(200, bundle([entry(untouched)])), elements=["Patient.gender"])
    assert b"SUBSETTED" not in other.fetch_page("Observation", None).ndjson  # no _elements for it


def test_the_search_of_a_page_is_chosen_by_query() -> None:
    source, recorder = make_source(
        always(200, bundle([])),
        types=("Patient",),
        type_filters=["Patient?gender=male,Patient?gender=female"],
    )
    assert source.searches("Patient").count == 2
    source.fetch_page("Patient", None, query=1)
    assert ("gender", "female") in recorder.requests[0].url.params.multi_items()


# --- de-duplication of a page ---------------------------------------------------------------------------


def test_a_page_without_resources_an_earlier_search_kept() -> None:
    lines = [json.dumps({"resourceType": "Patient", "id": i}).encode() + b"\n" for i in "abc"]
    page = Page("Patient", b"".join(lines), 3, "next", ids=("a", "b", "c"))
    kept = page.without({"b", "z"})
    assert kept.ids == ("a", "c") and kept.count == 2 and kept.next_cursor == "next"
    assert kept.ndjson == lines[0] + lines[2]
    assert page.without(set()) is page and page.without({"z"}) is page
    unlabelled = Page("Patient", b"".join(lines), 3, None)  # ids read from the lines
    assert unlabelled.without({"a", "b", "c"}).count == 0
