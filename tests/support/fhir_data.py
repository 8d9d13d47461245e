"""Deterministic FHIR R4 test data derived from an index: resource i of a type is computed, not stored.

So a dataset of 200,000 resources costs no memory, the test server and the DataValidator agree on
what "the source data" is, and every run sees the same ids, timestamps and field values.
Ids sort in index order (`patient-00000042`), which gives the server its stable paging order.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_S = 365 * 24 * 3600
_GOLDEN = 2654435761  # Knuth's multiplicative hash: scatters lastUpdated over the year
_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit " * 64
_XHTML_OPEN = '<div xmlns="http://www.w3.org/1999/xhtml">'

# Search parameters the test server understands beyond _count/_lastUpdated/ct, per type, as the
# value they compare against (token equality on the generated field).
SEARCH_PARAMS: dict[str, dict[str, Callable[[dict[str, Any]], str | None]]] = {
    "Patient": {"gender": lambda r: r.get("gender"), "active": lambda r: str(r.get("active")).lower()},
    "Observation": {"status": lambda r: r.get("status")},
    "Encounter": {"status": lambda r: r.get("status")},
    "Condition": {"clinical-status": lambda r: r["clinicalStatus"]["coding"][0]["code"]},
}


def parse_instant(text: str) -> datetime:
    """A FHIR instant or date (`2024-01-01`, taken as midnight UTC); raises ValueError."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def format_instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class LastUpdatedFilter:
    """One `_lastUpdated=<prefix><instant>` clause (clauses AND together)."""

    prefix: str
    instant: datetime

    @classmethod
    def parse(cls, value: str) -> LastUpdatedFilter:
        prefix, rest = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
        if prefix not in ("gt", "ge", "lt", "le", "eq"):
            raise ValueError(f"unsupported _lastUpdated prefix {prefix!r}")
        return cls(prefix, parse_instant(rest))

    def accepts(self, when: datetime) -> bool:
        return {
            "gt": when > self.instant,
            "ge": when >= self.instant,
            "lt": when < self.instant,
            "le": when <= self.instant,
            "eq": when == self.instant,
        }[self.prefix]


@dataclass(frozen=True)
class Criteria:
    """What a search selects: `_lastUpdated` clauses plus token parameters, all ANDed."""

    last_updated: tuple[LastUpdatedFilter, ...] = ()
    tokens: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_since(cls, since: str | None, type_filter_params: Sequence[tuple[str, str]] = ()) -> Criteria:
        clauses = (LastUpdatedFilter("gt", parse_instant(since)),) if since else ()
        return cls(clauses, tuple(type_filter_params))


@dataclass(frozen=True)
class FhirDataset:
    """`counts` resources per type; `resource_bytes` pads each resource's compact JSON to that size."""

    counts: Mapping[str, int]
    resource_bytes: int | None = None

    def count(self, resource_type: str) -> int:
        return int(self.counts.get(resource_type, 0))

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self.counts)

    @staticmethod
    def resource_id(resource_type: str, index: int) -> str:
        return f"{resource_type.lower()}-{index:08d}"

    def index_of(self, resource_type: str, resource_id: str) -> int | None:
        prefix = f"{resource_type.lower()}-"
        digits = resource_id.removeprefix(prefix)
        if not resource_id.startswith(prefix) or len(digits) != 8 or not digits.isdigit():
            return None
        index = int(digits)
        return index if index < self.count(resource_type) else None

    def _hash(self, resource_type: str, index: int) -> int:
        # Salted by type so Patient 7 and Observation 7 do not share a timestamp.
        return ((index + 1) * _GOLDEN + zlib.crc32(resource_type.encode())) & 0xFFFFFFFF

    def last_updated(self, resource_type: str, index: int) -> datetime:
        h = self._hash(resource_type, index)
        return EPOCH + timedelta(seconds=h % SPAN_S, milliseconds=h % 1000)

    def resource(self, resource_type: str, index: int) -> dict[str, Any]:
        resource = self._unpadded(resource_type, index)
        if self.resource_bytes:
            _pad(resource, self.resource_bytes)
        return resource

    def matches(self, resource_type: str, index: int, criteria: Criteria) -> bool:
        if criteria.last_updated:
            when = self.last_updated(resource_type, index)
            if not all(clause.accepts(when) for clause in criteria.last_updated):
                return False
        if criteria.tokens:
            resource = self._unpadded(resource_type, index)
            params = SEARCH_PARAMS.get(resource_type, {})
            for name, wanted in criteria.tokens:
                if name in params and params[name](resource) not in wanted.split(","):
                    return False
        return True

    def subject_id(self, resource_type: str, index: int) -> str | None:
        """The patient id in `subject` (what `patient=` searches), without building the resource."""
        if resource_type == "Patient" or resource_type not in _BUILDERS:
            return None
        return self.resource_id("Patient", index % max(1, self.count("Patient")))

    def ids(self, resource_type: str, *criteria: Criteria) -> Iterator[str]:
        """Ids matching any of `criteria` (none given: every id)."""
        for index in range(self.count(resource_type)):
            if not criteria or any(self.matches(resource_type, index, c) for c in criteria):
                yield self.resource_id(resource_type, index)

    def expected_ids(
        self,
        types: Sequence[str] | None = None,
        since: str | None = None,
        type_filters: Sequence[str] = (),
    ) -> dict[str, Iterator[str]]:
        """type -> ids an export with these parameters must produce (lazy; `since` is exclusive).
        Several filters for one type, repeated or comma-separated (`A?x=1,A?y=2`), are ORed."""
        filters: dict[str, list[list[tuple[str, str]]]] = {}
        for raw in type_filters:
            for query in re.split(r",(?=[A-Z][A-Za-z]+\?)", raw):
                filters.setdefault(query.partition("?")[0], []).append(parse_qsl(query.partition("?")[2]))
        return {
            resource_type: self.ids(
                resource_type,
                *(Criteria.from_since(since, f) for f in filters.get(resource_type, [[]])),
            )
            for resource_type in (types if types is not None else self.types)
        }

    # -- generation --------------------------------------------------------------------------

    def _unpadded(self, resource_type: str, index: int) -> dict[str, Any]:
        h = self._hash(resource_type, index)
        resource: dict[str, Any] = {
            "resourceType": resource_type,
            "id": self.resource_id(resource_type, index),
            "meta": {
                "versionId": "1",
                "lastUpdated": format_instant(self.last_updated(resource_type, index)),
            },
        }
        patient_ref = {
            "reference": f"Patient/{self.resource_id('Patient', index % max(1, self.count('Patient')))}"
        }
        when = format_instant(EPOCH - timedelta(days=h % 3650))
        builder = _BUILDERS.get(resource_type)
        if builder is not None:
            resource.update(builder(index, h, patient_ref, when))
        return resource


def _patient(index: int, h: int, _ref: dict[str, str], _when: str) -> dict[str, Any]:
    return {
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": f"{100000000 + index}"}],
        "active": h % 10 != 0,
        "name": [
            {"family": ["Smith", "Jones", "Garcia", "Chen", "Okafor"][h % 5], "given": [f"Test{index}"]}
        ],
        "gender": ["female", "male", "other", "unknown"][h % 4],
        "birthDate": f"{1940 + h % 80:04d}-{1 + h % 12:02d}-{1 + h % 28:02d}",
    }


def _observation(index: int, h: int, ref: dict[str, str], when: str) -> dict[str, Any]:
    return {
        "status": ["final", "final", "amended", "preliminary"][h % 4],
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": ref,
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": 50 + h % 70,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _encounter(index: int, h: int, ref: dict[str, str], when: str) -> dict[str, Any]:
    return {
        "status": ["finished", "finished", "in-progress", "planned"][h % 4],
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": ref,
        "period": {"start": when},
    }


def _condition(index: int, h: int, ref: dict[str, str], when: str) -> dict[str, Any]:
    return {
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": ["active", "resolved", "remission"][h % 3],
                }
            ]
        },
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]
        },
        "subject": ref,
        "onsetDateTime": when,
    }


_BUILDERS: dict[str, Callable[[int, int, dict[str, str], str], dict[str, Any]]] = {
    "Patient": _patient,
    "Observation": _observation,
    "Encounter": _encounter,
    "Condition": _condition,
}


def _pad(resource: dict[str, Any], target: int) -> None:
    """Add a narrative (`text.div`, valid FHIR) sized so compact JSON is `target` bytes (if larger)."""
    resource["text"] = {"status": "generated", "div": _XHTML_OPEN + "</div>"}
    missing = target - len(json.dumps(resource, separators=(",", ":")))
    if missing > 0:
        filler = (_FILLER * (missing // len(_FILLER) + 1))[:missing]
        resource["text"]["div"] = _XHTML_OPEN + filler + "</div>"
