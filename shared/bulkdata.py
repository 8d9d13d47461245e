"""The FHIR Bulk Data (IG v2) front door's logic, framework-free: kick-off parameters in, an export
request out; job views in, status answers, manifests and OperationOutcomes out.

    kick-off   query/Parameters -> `parse_kickoff` -> `KickoffParams`
               + CapabilityStatement (`searchable_types`) + Group (`group_members`)
               -> `plan_export` -> `ExportPlan` -> `export_body` (the job API's request body)
    status     `job_api.show` view -> `status_answer` (202 + X-Progress | 200 manifest | 500 | 404)
    download   view + file name -> `export_file` (the job's container and blob, or None)

Every refusal is a `BulkDataError` carrying its HTTP status and OperationOutcome issues, each issue
naming the offending parameter in `expression`. Only `read_capability`/`read_group` do I/O (two
GETs on the source with the process's shared `httpx.Client`). Never imports azure.functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from shared._strict import RESOURCE_TYPE, check_email, check_instant
from shared.errors import PermanentError, TransientError, ValidationError
from shared.sources import classify_status, classify_transport_error, parse_type_filters, redact_url

__all__ = [
    "FRONTDOOR_LABEL",
    "MAX_PROGRESS_CHARS",
    "PATIENT_COMPARTMENT",
    "BulkDataError",
    "ExportPlan",
    "Issue",
    "KickoffParams",
    "Level",
    "StatusAnswer",
    "export_body",
    "export_file",
    "group_members",
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

FRONTDOOR_LABEL: Final = ("frontdoor", "fhir")
REQUEST_LABEL: Final = "fhir_request"
# Used when neither the caller nor the ADMIN_EMAIL setting names someone (`.invalid`: RFC 2606).
SERVICE_ADDRESS: Final = "fhir-bulk-export@service.invalid"
NDJSON_FORMATS: Final = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
# IG v2 parameters this server does not implement: refused unless `Prefer: handling=lenient`.
UNSUPPORTED_PARAMS: Final = ("_elements", "patient", "includeAssociatedData")
MAX_PROGRESS_CHARS: Final = 99  # the IG: X-Progress is under 100 characters
# `contracts` reads each type filter with ObjectReader.texts' 2048-character limit; a Group's
# member restriction must fit in it (about 100 members with ids like `patient-00000042`).
MAX_TYPE_FILTER_CHARS: Final = 2048
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

_FHIR_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FILE_NAME: Final = re.compile(r"^[A-Z][A-Za-z]{1,63}-[1-9][0-9]{0,8}\.ndjson$")
_PENDING: Final = {"queued": 1, "running": 2, "retrying": 5}  # state -> Retry-After seconds


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue; `code` is a FHIR IssueType, `expression` the parameter."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def to_dict(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


class BulkDataError(PermanentError):
    """A request the front door refuses: the HTTP status and the issues of its OperationOutcome."""

    def __init__(self, status: int, *issues: Issue) -> None:
        super().__init__("; ".join(issue.diagnostics for issue in issues))
        self.status = status
        self.issues = issues


def operation_outcome(*issues: Issue) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue.to_dict() for issue in issues]}


# --- kick-off parameters -----------------------------------------------------------------------


@dataclass(frozen=True)
class KickoffParams:
    types: tuple[str, ...] = ()  # () : the server's default set
    since: str | None = None
    type_filters: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # unsupported parameters dropped under lenient handling


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
    pairs: list[tuple[str, str]] = []
    for i, parameter in enumerate(body.get("parameter") or []):
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


def prefers_lenient(prefer: str | None) -> bool:
    """`Prefer: respond-async, handling=lenient` -> True."""
    tokens = (token.strip().replace(" ", "").lower() for token in (prefer or "").replace(";", ",").split(","))
    return "handling=lenient" in tokens


def parse_kickoff(pairs: Iterable[tuple[str, str]], *, lenient: bool) -> KickoffParams:
    """Validate the IG parameters; one `BulkDataError(400)` names every bad parameter at once.

    Unknown parameters are ignored (as FHIR servers do with unknown search parameters); the
    unsupported IG ones are refused unless `lenient`.
    """
    issues: list[Issue] = []
    types: list[str] = []
    type_given = False
    since: str | None = None
    filters: list[str] = []
    ignored: list[str] = []
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
            filters.append(value)
        elif name in UNSUPPORTED_PARAMS:
            if lenient:
                ignored.append(name)
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
        parse_type_filters(filters, ())  # shape, reserved parameters, one filter per type
    except ValidationError as exc:
        issues.append(Issue("invalid", f"_typeFilter: {exc.detail}", "_typeFilter"))
    if issues:
        raise BulkDataError(400, *issues)
    return KickoffParams(tuple(types), since, tuple(filters), tuple(dict.fromkeys(ignored)))


# --- what the source offers --------------------------------------------------------------------


def searchable_types(capability: Mapping[str, Any]) -> tuple[str, ...]:
    """Resource types a CapabilityStatement's server-mode `rest` lists with `search-type`."""
    found: list[str] = []
    for rest in capability.get("rest") or []:
        if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
            continue
        for resource in rest.get("resource") or []:
            if not isinstance(resource, Mapping):
                continue
            codes = {i.get("code") for i in resource.get("interaction") or [] if isinstance(i, Mapping)}
            name = resource.get("type")
            if (
                "search-type" in codes
                and isinstance(name, str)
                and RESOURCE_TYPE.match(name)
                and name not in found
            ):
                found.append(name)
    return tuple(found)


def group_members(group: Mapping[str, Any], group_id: str) -> tuple[str, ...]:
    """Ids of the Group's active Patient members, in order, without repeats."""
    if group.get("actual") is False:
        raise BulkDataError(
            422,
            Issue(
                "not-supported",
                f"Group/{group_id} is a definitional group (actual=false); its members are not listed",
            ),
        )
    members: list[str] = []
    for member in group.get("member") or []:
        if not isinstance(member, Mapping) or member.get("inactive") is True:
            continue
        reference = (member.get("entity") or {}).get("reference")
        if not isinstance(reference, str):
            continue
        # "Patient/123", an absolute ".../Patient/123", or either with "/_history/n".
        parts = reference.split("/_history/")[0].rstrip("/").split("/")
        if (
            len(parts) >= 2
            and parts[-2] == "Patient"
            and _FHIR_ID.match(parts[-1])
            and parts[-1] not in members
        ):
            members.append(parts[-1])
    return tuple(members)


def _read_json(http: httpx.Client, url: str, what: str, not_found: Issue | None = None) -> dict[str, Any]:
    try:
        response = http.get(url, headers={"Accept": "application/fhir+json"})
    except httpx.RequestError as exc:
        raise classify_transport_error(exc, what) from exc
    if response.status_code in (404, 410) and not_found is not None:
        raise BulkDataError(404, not_found)
    if not response.is_success:
        error = classify_status(response, response.content, what, now=lambda: datetime.now(UTC))
        if isinstance(error, TransientError):
            raise error
        raise BulkDataError(502, Issue("exception", f"the FHIR server refused {error}"))
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise BulkDataError(
            502, Issue("exception", f"{what}: the FHIR server's answer is not a JSON resource")
        )
    return document


def read_capability(http: httpx.Client, base_url: str) -> dict[str, Any]:
    url = f"{base_url.rstrip('/')}/metadata"
    return _read_json(http, url, f"metadata {redact_url(url)}")


def read_group(http: httpx.Client, base_url: str, group_id: str) -> dict[str, Any]:
    if not _FHIR_ID.match(group_id):
        raise BulkDataError(400, Issue("invalid", f"{group_id!r} is not a FHIR id", "Group.id"))
    url = f"{base_url.rstrip('/')}/Group/{group_id}"
    missing = Issue("not-found", f"Group/{group_id} was not found on the FHIR server", "Group.id")
    group = _read_json(http, url, f"Group/{group_id}", missing)
    if group.get("resourceType") != "Group":
        raise BulkDataError(
            502, Issue("exception", f"Group/{group_id}: the FHIR server answered a non-Group")
        )
    return group


# --- planning the export -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportPlan:
    types: tuple[str, ...]
    type_filters: tuple[str, ...]
    ignored: tuple[str, ...] = ()  # what lenient handling dropped, for an informational outcome


def plan_export(
    params: KickoffParams,
    *,
    level: Level,
    searchable: Sequence[str],
    members: Sequence[str] | None = None,
    lenient: bool = False,
) -> ExportPlan:
    """The types and type filters of the export; for a Group, each type restricted to `members`."""
    issues: list[Issue] = []
    ignored = list(params.ignored)

    def refuse(issue: Issue, dropped: str) -> None:
        if lenient:
            ignored.append(dropped)
        else:
            issues.append(issue)

    patient_level = level != "system"
    candidates = [t for t in searchable if not patient_level or t in PATIENT_COMPARTMENT]
    types: list[str] = []
    for t in params.types:
        if t not in searchable:
            refuse(
                Issue("not-supported", f"_type: the FHIR server does not support searching {t}", "_type"), t
            )
        elif patient_level and t not in PATIENT_COMPARTMENT:
            refuse(
                Issue(
                    "not-supported",
                    f"_type: {t} is not in this server's patient compartment "
                    f"list, so a {level}-level export cannot include it",
                    "_type",
                ),
                t,
            )
        else:
            types.append(t)
    if not params.types:
        types = candidates
    filters: dict[str, str] = {}
    for raw in params.type_filters:
        t = raw.partition("?")[0]
        if t in types:
            filters[t] = raw
        else:
            refuse(
                Issue("invalid", f"_typeFilter: {raw!r} filters {t}, which is not exported", "_typeFilter"),
                raw,
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
    if level == "group":
        filters = _restrict(types, filters, members or ())
    return ExportPlan(tuple(types), tuple(filters[t] for t in types if t in filters), tuple(ignored))


def _restrict(types: Sequence[str], filters: Mapping[str, str], members: Sequence[str]) -> dict[str, str]:
    """Each type's filter ANDed with `<patient param>=<member ids>` (one filter per type: the
    source cannot OR filters, so a client's own filter and the restriction must share one)."""
    if not members:
        raise BulkDataError(
            422, Issue("not-found", "the Group has no active Patient members; nothing to export")
        )
    ids = ",".join(members)
    restricted: dict[str, str] = {}
    for t in types:
        clause = urlencode([(PATIENT_COMPARTMENT[t], ids)], safe=",")
        restricted[t] = f"{filters[t]}&{clause}" if t in filters else f"{t}?{clause}"
        if len(restricted[t]) > MAX_TYPE_FILTER_CHARS:
            raise BulkDataError(
                422,
                Issue(
                    "too-costly",
                    f"the Group has {len(members)} members; this server exports groups whose member list "
                    f"fits a {MAX_TYPE_FILTER_CHARS}-character search restriction (about 100 members)",
                ),
            )
    return restricted


def requester(headers: Mapping[str, str], admin_email: str | None) -> str:
    """`X-Requested-By` or `From` when it holds an e-mail address, else ADMIN_EMAIL, else ours."""
    for name in ("x-requested-by", "from"):
        address = parseaddr(headers.get(name) or "")[1]
        try:
            return check_email(name, address)
        except ValidationError:
            continue
    return admin_email or SERVICE_ADDRESS


def kickoff_labels(request_url: str, level: Level, group_id: str | None = None) -> dict[str, str]:
    """Labels marking a front-door job; `fhir_request` is the manifest's `request` (the kick-off
    URL without the function key; path only when too long for a label, as for a POST)."""
    parts = urlsplit(request_url)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query_pairs(request_url)), ""))
    if len(url) > LABEL_VALUE_CHARS:
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))[:LABEL_VALUE_CHARS]
    labels = {FRONTDOOR_LABEL[0]: FRONTDOOR_LABEL[1], REQUEST_LABEL: url, "fhir_level": level}
    if group_id:
        labels["fhir_group"] = group_id
    return labels


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
    return {
        "source": source,
        "destination": {"kind": "blob", "container": container, "path_prefix": job_id},
        "requested_by": requested_by,
        "labels": dict(labels),
    }


# --- status, manifest, downloads ---------------------------------------------------------------


@dataclass(frozen=True)
class StatusAnswer:
    status: int
    headers: Mapping[str, str]
    body: dict[str, Any] | None  # a manifest (200), an OperationOutcome (4xx/5xx), or None (202)


def is_frontdoor_job(view: Mapping[str, Any] | None) -> bool:
    """A live job the front door started: deleted (cancel marker) and cancelled jobs are gone."""
    if view is None or view.get("cancel_requested") or view.get("state") == "cancelled":
        return False
    return bool((view.get("labels") or {}).get(FRONTDOOR_LABEL[0]) == FRONTDOOR_LABEL[1])


def progress_text(view: Mapping[str, Any]) -> str:
    """`running: 1 of 3 types done, 1,234 resources` (always under 100 characters)."""
    state = str(view.get("state"))
    progress: Mapping[str, Mapping[str, Any]] = view.get("progress") or {}
    if state == "queued" or not progress:
        return state[:MAX_PROGRESS_CHARS]
    done = sum(1 for p in progress.values() if p.get("state") == "succeeded")
    resources = sum(int(p.get("resources", 0)) for p in progress.values())
    head = "retrying after an error" if state == "retrying" else state
    return f"{head}: {done} of {len(progress)} types done, {resources:,} resources"[:MAX_PROGRESS_CHARS]


def retry_after_seconds(state: str) -> int:
    return _PENDING.get(state, 2)


def manifest(view: Mapping[str, Any], file_url: Callable[[str], str]) -> dict[str, Any]:
    """The IG's completion manifest; files in the request's type order, then by sequence."""
    order = {t: i for i, t in enumerate(view["request"]["source"]["types"])}
    files = sorted(view.get("output") or [], key=lambda f: (order.get(f["type"], len(order)), f["sequence"]))
    return {
        # The kick-off time: it precedes every read of the source, so a follow-up export with
        # `_since=transactionTime` misses no change (it may repeat a few).
        "transactionTime": view["created"],
        "request": (view.get("labels") or {}).get(REQUEST_LABEL, ""),
        "requiresAccessToken": True,  # downloads need the same function key as the kick-off
        "output": [{"type": f["type"], "url": file_url(f["name"]), "count": f["count"]} for f in files],
        "error": [],
    }


def status_answer(
    job_id: str, view: Mapping[str, Any] | None, file_url: Callable[[str], str]
) -> StatusAnswer:
    """What `GET` on the status URL answers for the job view `job_api.show` returned."""
    if not is_frontdoor_job(view):
        return StatusAnswer(404, {}, operation_outcome(Issue("not-found", f"no bulk export {job_id!r}")))
    assert view is not None  # is_frontdoor_job(None) is False
    state = str(view["state"])
    if state in _PENDING:
        headers = {"X-Progress": progress_text(view), "Retry-After": str(retry_after_seconds(state))}
        return StatusAnswer(202, headers, None)
    if state == "succeeded":
        return StatusAnswer(200, {}, manifest(view, file_url))
    reason = view.get("last_error") or "no reason was recorded"
    return StatusAnswer(500, {}, operation_outcome(Issue("exception", f"the export failed: {reason}")))


def export_file(view: Mapping[str, Any] | None, name: str) -> tuple[str, str] | None:
    """(container, blob name) of one output file of a finished front-door job, else None.

    Only names the job's own manifest lists are served, so no request can reach a blob outside
    the job's prefix."""
    if not _FILE_NAME.match(name) or not is_frontdoor_job(view):
        return None
    assert view is not None
    if view["state"] != "succeeded" or name not in {f["name"] for f in view.get("output") or []}:
        return None
    destination = view["request"]["destination"]
    prefix = destination.get("path_prefix") or ""
    return str(destination["container"]), f"{prefix}/{name}" if prefix else name
