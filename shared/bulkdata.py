"""The FHIR Bulk Data (IG v2) front door's logic, framework-free: kick-off parameters in, an export
request out; job views in, status answers, manifests and OperationOutcomes out.

    kick-off   headers + query/Parameters -> `parse_kickoff` -> `KickoffParams`
               + CapabilityStatement (`searchable_types`, `elements_searchable`) + Group
               (`group_members`) -> `plan_export` -> `ExportPlan` -> `export_body` (the job
               API's request body; the patient list goes to the work store, not the body)
    status     `job_api.show` view -> `status_answer` (202 + X-Progress | 200 manifest with
               `Expires` | 500 | 404)
    download   view + file name -> `export_file` (the job's container and blob, or None)

Every refusal is a `BulkDataError` carrying its HTTP status and OperationOutcome issues, each issue
naming the offending parameter or header in `expression`; what lenient handling ignores becomes
the manifest's error file (`ERROR_FILE`, one OperationOutcome a line). The source is read by
`shared.bulkdata_source`, the answers after the kick-off are `shared.bulkdata_status` (both
re-exported here). Never imports azure.functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared._strict import RESOURCE_TYPE, check_email, check_instant
from shared.bulkdata_source import (
    elements_searchable,
    group_members,
    patient_id,
    read_capability,
    read_group,
    searchable_types,
)
from shared.bulkdata_status import (
    ERROR_FILE,
    ERRORS_LABEL,
    FILE_RETENTION,
    FRONTDOOR_LABEL,
    MAX_PROGRESS_CHARS,
    REQUEST_LABEL,
    StatusAnswer,
    expires,
    export_file,
    is_frontdoor_job,
    manifest,
    progress_text,
    retry_after_seconds,
    status_answer,
)
from shared.contracts import MAX_PATIENTS
from shared.errors import ValidationError
from shared.operation_outcome import BulkDataError, Issue, operation_outcome, outcomes_ndjson
from shared.sources import check_element, elements_for, parse_type_filters, split_type_filters

__all__ = [
    "ERROR_FILE",
    "FILE_RETENTION",
    "FRONTDOOR_LABEL",
    "MAX_PROGRESS_CHARS",
    "PATIENT_COMPARTMENT",
    "BulkDataError",
    "ExportPlan",
    "Issue",
    "KickoffParams",
    "Level",
    "StatusAnswer",
    "elements_searchable",
    "error_file",
    "export_body",
    "expires",
    "export_file",
    "group_members",
    "header_issues",
    "is_frontdoor_job",
    "kickoff_labels",
    "manifest",
    "operation_outcome",
    "parameters_pairs",
    "parse_kickoff",
    "plan_export",
    "prefers_lenient",
    "progress_text",
    "query_pairs",
    "read_capability",
    "read_group",
    "requester",
    "retry_after_seconds",
    "searchable_types",
    "status_answer",
]

Level = Literal["system", "patient", "group"]

# Used when neither the caller nor the ADMIN_EMAIL setting names someone (`.invalid`: RFC 2606).
SERVICE_ADDRESS: Final = "fhir-bulk-export@service.invalid"
NDJSON_FORMATS: Final = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
# IG v2 parameters this server does not implement: refused unless `Prefer: handling=lenient`.
UNSUPPORTED_PARAMS: Final = ("includeAssociatedData",)
FHIR_JSON: Final = "application/fhir+json"
LABEL_VALUE_CHARS: Final = 256  # contracts' label value limit

# The patient compartment types this front door exports for Patient/ and Group/ kick-offs, with
# the search parameter that restricts each to given patients (FHIR R4 CompartmentDefinition
# `patient`). Deliberately small; a type outside it is refused for patient-level exports.
PATIENT_COMPARTMENT: Final[Mapping[str, str]] = {
    "Patient": "_id",
    "AllergyIntolerance": "patient",
    "CarePlan": "patient",
    "CareTeam": "patient",
    "Condition": "patient",
    "Coverage": "patient",
    "DiagnosticReport": "patient",
    "DocumentReference": "patient",
    "Encounter": "patient",
    "ExplanationOfBenefit": "patient",
    "Goal": "patient",
    "Immunization": "patient",
    "MedicationAdministration": "patient",
    "MedicationRequest": "patient",
    "MedicationStatement": "patient",
    "Observation": "patient",
    "Procedure": "patient",
    "ServiceRequest": "patient",
}


# --- kick-off parameters -----------------------------------------------------------------------


@dataclass(frozen=True)
class KickoffParams:
    types: tuple[str, ...] = ()  # () : the server's default set
    since: str | None = None
    type_filters: tuple[str, ...] = ()  # one query each (comma forms split); ORed per type
    elements: tuple[str, ...] = ()  # `_elements`: `name` or `Patient.name`
    patients: tuple[str, ...] | None = None  # the `patient` parameter's ids; None: not given
    ignored: tuple[Issue, ...] = ()  # what lenient handling dropped, for the error file


def query_pairs(url: str) -> list[tuple[str, str]]:
    """The kick-off URL's query parameters, repeats kept (the host joins repeats with ",", which
    would merge two `_typeFilter`s), the function key (`code`) dropped."""
    return [(k, v) for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k != "code"]


def parameters_pairs(body: Any) -> list[tuple[str, str]]:
    """A POST kick-off's FHIR `Parameters` body as (name, value) pairs; None (no body) gives []."""
    if body is None:
        return []
    if not isinstance(body, Mapping) or body.get("resourceType") != "Parameters":
        raise BulkDataError(
            400, Issue("invalid", "a POST kick-off body must be a FHIR Parameters resource", "body")
        )
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list):
        raise BulkDataError(400, Issue("invalid", "Parameters.parameter must be a list", "body"))
    pairs: list[tuple[str, str]] = []
    for i, parameter in enumerate(parameters):
        name = parameter.get("name") if isinstance(parameter, Mapping) else None
        if not isinstance(name, str) or not name:
            raise BulkDataError(400, Issue("invalid", f"Parameters.parameter[{i}] has no name", "body"))
        values = [v for k, v in parameter.items() if k.startswith("value")]
        if len(values) != 1:
            raise BulkDataError(
                400, Issue("invalid", f"parameter {name} must carry exactly one value[x]", name)
            )
        value = values[0]
        pairs.append((name, value if isinstance(value, str) else json.dumps(value)))
    return pairs


def _prefer_tokens(prefer: str | None) -> set[str]:
    return {token.strip().replace(" ", "").lower() for token in (prefer or "").replace(";", ",").split(",")}


def prefers_lenient(prefer: str | None) -> bool:
    """`Prefer: respond-async, handling=lenient` -> True."""
    return "handling=lenient" in _prefer_tokens(prefer)


def header_issues(headers: Mapping[str, str]) -> list[Issue]:
    """The kick-off headers the IG asks for, refused when missing as the SMART reference server
    does: `Accept: application/fhir+json` (the format of our OperationOutcomes) and
    `Prefer: respond-async` (the only pattern served)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    issues: list[Issue] = []
    accepted = {part.split(";")[0].strip().lower() for part in (lowered.get("accept") or "").split(",")}
    if FHIR_JSON not in accepted:
        issues.append(
            Issue(
                "invalid",
                f"Accept: a kick-off must accept {FHIR_JSON} (got {lowered.get('accept')!r})",
                "Accept",
            )
        )
    if "respond-async" not in _prefer_tokens(lowered.get("prefer")):
        issues.append(
            Issue(
                "invalid",
                "Prefer: a kick-off must send Prefer: respond-async (this server answers asynchronously)",
                "Prefer",
            )
        )
    return issues


def _patient_ids(value: str) -> list[str] | None:
    """`Patient/1` or `Patient/1,Patient/2` (query), or a `valueReference` as JSON (POST body)."""
    if value.startswith("{"):
        try:
            reference = json.loads(value).get("reference")
        except (ValueError, AttributeError):
            return None
        references = [reference] if isinstance(reference, str) else []
    else:
        references = value.split(",")
    ids = [patient_id(reference.strip()) for reference in references]
    return [i for i in ids if i] if ids and all(ids) else None


def parse_kickoff(
    pairs: Iterable[tuple[str, str]],
    *,
    lenient: bool,
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> KickoffParams:
    """Validate the IG parameters (and `headers`, when given); one `BulkDataError(400)` names
    every bad parameter and header at once.

    Unknown parameters are ignored (as FHIR servers do with unknown search parameters); the
    unsupported IG ones are refused unless `lenient`. `now` is the clock `_since` is checked
    against (a `_since` in the future is refused, as the SMART reference server does).
    """
    issues: list[Issue] = header_issues(headers) if headers is not None else []
    types: list[str] = []
    type_given = False
    since: str | None = None
    filters: list[str] = []
    elements: list[str] = []
    patients: dict[str, None] | None = None  # ordered, without repeats
    ignored: list[Issue] = []
    for name, raw in pairs:
        value = raw.strip()
        if name == "_type":
            type_given = True
            for item in (part.strip() for part in value.split(",")):
                if not RESOURCE_TYPE.match(item):
                    issues.append(
                        Issue("invalid", f"_type: {item!r} is not a FHIR resource type name", "_type")
                    )
                elif item not in types:
                    types.append(item)
        elif name == "_since":
            # An unencoded "+hh:mm" offset reaches us as " hh:mm" (a query's "+" means space).
            value = value.replace(" ", "+")
            try:
                if since is not None:
                    raise ValidationError("_since", "is given more than once")
                since = check_instant("_since", value)
                if datetime.fromisoformat(since) > (now or datetime.now(UTC)):
                    raise ValidationError("_since", "is in the future")
            except ValidationError as exc:
                issues.append(Issue("invalid", f"_since: {exc.detail} (got {value!r})", "_since"))
        elif name == "_outputFormat":
            if value.replace(" ", "+").lower() not in NDJSON_FORMATS:
                issues.append(
                    Issue(
                        "not-supported",
                        f"_outputFormat: {value!r} is not supported; use application/fhir+ndjson",
                        "_outputFormat",
                    )
                )
        elif name == "_typeFilter":
            filters.extend(q for q in split_type_filters([value]) if q not in filters)
        elif name == "_elements":
            for item in (part.strip() for part in value.split(",")):
                try:
                    if item not in elements:
                        elements.append(check_element(item, "_elements"))
                except ValidationError as exc:
                    issues.append(Issue("invalid", f"_elements: {exc.detail}", "_elements"))
        elif name == "patient":
            ids = _patient_ids(value)
            if ids is None:
                issues.append(
                    Issue("invalid", f"patient: {value[:100]!r} is not a Patient reference", "patient")
                )
            else:
                patients = {} if patients is None else patients
                patients.update(dict.fromkeys(ids))
        elif name in UNSUPPORTED_PARAMS:
            if lenient:
                ignored.append(_ignored(name, f"{name}: not supported by this server; ignored"))
            else:
                issues.append(
                    Issue(
                        "not-supported",
                        f"{name}: this server does not support the {name} parameter "
                        "(send Prefer: handling=lenient to have it ignored)",
                        name,
                    )
                )
    if type_given and not types and not any(i.expression == "_type" for i in issues):
        issues.append(Issue("invalid", "_type: names no resource type", "_type"))
    try:
        parse_type_filters(filters, ())  # shape and reserved parameters; several per type are ORed
    except ValidationError as exc:
        issues.append(Issue("invalid", f"_typeFilter: {exc.detail}", "_typeFilter"))
    if issues:
        raise BulkDataError(400, *issues)
    return KickoffParams(
        tuple(types),
        since,
        tuple(filters),
        tuple(elements),
        None if patients is None else tuple(patients),
        tuple(ignored),
    )


def _ignored(expression: str, diagnostics: str) -> Issue:
    """What lenient handling dropped: a warning in the manifest's error file."""
    return Issue("not-supported", diagnostics, expression, severity="warning")


# --- planning the export -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportPlan:
    types: tuple[str, ...]
    type_filters: tuple[str, ...]  # the client's queries of exported types, ORed per type
    ignored: tuple[Issue, ...] = ()  # what lenient handling dropped: the manifest's error file
    patients: tuple[str, ...] | None = None  # restricted to these (Group members, `patient`)
    elements: tuple[str, ...] = ()

    @property
    def patient_params(self) -> dict[str, str]:
        """Type -> the search parameter restricting it to `patients` (empty: not restricted)."""
        return {t: PATIENT_COMPARTMENT[t] for t in self.types} if self.patients is not None else {}


def plan_export(
    params: KickoffParams,
    *,
    level: Level,
    searchable: Sequence[str],
    members: Sequence[str] | None = None,
    elements_types: Sequence[str] | None = None,
    lenient: bool = False,
) -> ExportPlan:
    """The types, filters, patients and elements of the export. A Group export is restricted to
    `members`, and to those of them the `patient` parameter names; a Patient export to the
    `patient` parameter's patients when given. `elements_types`: the types whose searches take
    `_elements` (`elements_searchable`; None: every type). Under `lenient`, what would be
    refused is dropped and listed in `ignored` instead."""
    issues: list[Issue] = []
    ignored = list(params.ignored)

    def refuse(issue: Issue) -> None:
        if lenient:
            ignored.append(_ignored(issue.expression or "", f"{issue.diagnostics}; ignored"))
        else:
            issues.append(issue)

    patient_level = level != "system"
    candidates = [t for t in searchable if not patient_level or t in PATIENT_COMPARTMENT]
    types: list[str] = []
    for t in params.types:
        if t not in searchable:
            refuse(Issue("not-supported", f"_type: the FHIR server does not support searching {t}", "_type"))
        elif patient_level and t not in PATIENT_COMPARTMENT:
            refuse(
                Issue(
                    "not-supported",
                    f"_type: {t} is not in this server's patient compartment "
                    f"list, so a {level}-level export cannot include it",
                    "_type",
                )
            )
        else:
            types.append(t)
    if not params.types:
        types = candidates
    filters: list[str] = []
    for raw in params.type_filters:
        t = raw.partition("?")[0]
        if t in types:
            filters.append(raw)
        else:
            refuse(
                Issue("invalid", f"_typeFilter: {raw!r} filters {t}, which is not exported", "_typeFilter")
            )
    patients = _patients(params, level, members, refuse)
    elements = params.elements
    subsetted = [t for t in types if elements_for(elements, t)]
    unable = [t for t in subsetted if elements_types is not None and t not in elements_types]
    if unable:
        elements = ()
        refuse(
            Issue(
                "not-supported",
                f"_elements: the FHIR server does not list the _elements search parameter for "
                f"{', '.join(unable)} (CapabilityStatement searchParam)",
                "_elements",
            )
        )
    if issues:
        raise BulkDataError(400, *issues)
    if not types:
        if params.types:
            raise BulkDataError(
                400, Issue("not-supported", "_type: none of the requested types can be exported", "_type")
            )
        raise BulkDataError(
            502,
            Issue(
                "not-supported",
                f"the FHIR server lists no resource types a {level}-level "
                "export could search (CapabilityStatement search-type)",
            ),
        )
    if patients is not None and not patients:
        nobody = "the Group has no active Patient members" if level == "group" else "no patients"
        raise BulkDataError(422, Issue("not-found", f"{nobody} to export; nothing to do", "patient"))
    if patients is not None and len(patients) > MAX_PATIENTS:
        raise BulkDataError(
            422,
            Issue("too-costly", f"{len(patients):,} patients; this server exports at most {MAX_PATIENTS:,}"),
        )
    return ExportPlan(tuple(types), tuple(filters), tuple(ignored), patients, elements)


def _patients(
    params: KickoffParams, level: Level, members: Sequence[str] | None, refuse: Callable[[Issue], None]
) -> tuple[str, ...] | None:
    """The patients the export is restricted to (None: not restricted)."""
    if level == "system":
        if params.patients is not None:
            refuse(Issue("not-supported", "patient: applies to Patient and Group exports only", "patient"))
        return None
    if level == "patient":
        return params.patients
    group = tuple(members or ())
    if params.patients is None:
        return group
    in_group = set(group)
    outside = [p for p in params.patients if p not in in_group]
    if outside:
        refuse(
            Issue(
                "invalid",
                f"patient: {', '.join(outside[:5])}{' ...' if len(outside) > 5 else ''} "
                f"{'is' if len(outside) == 1 else 'are'} not in the Group",
                "patient",
            )
        )
    return tuple(p for p in params.patients if p in in_group)


def requester(headers: Mapping[str, str], admin_email: str | None) -> str:
    """`X-Requested-By` or `From` when it holds an e-mail address, else ADMIN_EMAIL, else ours."""
    for name in ("x-requested-by", "from"):
        address = parseaddr(headers.get(name) or "")[1]
        try:
            return check_email(name, address)
        except ValidationError:
            continue
    return admin_email or SERVICE_ADDRESS


def kickoff_labels(
    request_url: str, level: Level, group_id: str | None = None, *, errors: int = 0
) -> dict[str, str]:
    """Labels marking a front-door job; `fhir_request` is the manifest's `request` (the kick-off
    URL without the function key; path only when too long for a label, as for a POST);
    `fhir_errors` the number of OperationOutcomes in the error file, when there is one."""
    parts = urlsplit(request_url)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query_pairs(request_url)), ""))
    if len(url) > LABEL_VALUE_CHARS:
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))[:LABEL_VALUE_CHARS]
    labels = {FRONTDOOR_LABEL[0]: FRONTDOOR_LABEL[1], REQUEST_LABEL: url, "fhir_level": level}
    if group_id:
        labels["fhir_group"] = group_id
    if errors:
        labels[ERRORS_LABEL] = str(errors)
    return labels


def error_file(plan: ExportPlan) -> bytes | None:
    """The error file's content (`ERROR_FILE`): one OperationOutcome per ignored parameter."""
    return outcomes_ndjson(plan.ignored) if plan.ignored else None


def export_body(
    plan: ExportPlan,
    params: KickoffParams,
    *,
    base_url: str,
    container: str,
    job_id: str,
    requested_by: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The job API's request body (`shared.contracts.parse_export_request` shape)."""
    source: dict[str, Any] = {"kind": "fhir", "base_url": base_url, "types": list(plan.types)}
    if params.since:
        source["since"] = params.since
    if plan.type_filters:
        source["type_filters"] = list(plan.type_filters)
    if plan.elements:
        source["elements"] = list(plan.elements)
    if plan.patients is not None:
        # The ids go to the work store under the job id (the kick-off stores them), not here.
        source["patients"] = {"count": len(plan.patients), "search_params": plan.patient_params}
    return {
        "source": source,
        "destination": {"kind": "blob", "container": container, "path_prefix": job_id},
        "requested_by": requested_by,
        "labels": dict(labels),
    }
