"""What the Bulk Data front door reads from the source, and what it concludes: the searchable
types and `_elements` support from the CapabilityStatement, a Group's members. The only I/O of
the front door's logic: two GETs (`read_capability`, `read_group`) on the process's shared
`httpx.Client`; refusals are `BulkDataError`s, outages `TransientError`s. Re-exported by
`shared.bulkdata`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from shared._strict import RESOURCE_TYPE
from shared.errors import TransientError
from shared.operation_outcome import BulkDataError, Issue
from shared.sources import classify_status, classify_transport_error, redact_url

__all__ = [
    "FHIR_ID",
    "elements_searchable",
    "group_members",
    "patient_id",
    "read_capability",
    "read_group",
    "searchable_types",
]

FHIR_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _server_rests(capability: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for rest in capability.get("rest") or []:
        if isinstance(rest, Mapping) and rest.get("mode", "server") == "server":
            yield rest


def _names(items: Any) -> set[str]:
    return {str(i.get("name")) for i in items or [] if isinstance(i, Mapping)}


def elements_searchable(capability: Mapping[str, Any], types: Iterable[str]) -> tuple[str, ...]:
    """Of `types`, those whose searches take `_elements`, by one simple rule: the server-mode
    `rest` lists a `searchParam` named `_elements`, for all types (`rest.searchParam`) or for
    that type (`rest.resource.searchParam`). A server that honours it without saying so is
    treated as not supporting it: we cannot tell it from one that ignores it."""
    wanted = list(types)
    found: set[str] = set()
    for rest in _server_rests(capability):
        if "_elements" in _names(rest.get("searchParam")):
            found.update(wanted)
        for resource in rest.get("resource") or []:
            if isinstance(resource, Mapping) and "_elements" in _names(resource.get("searchParam")):
                found.add(str(resource.get("type")))
    return tuple(t for t in wanted if t in found)


def searchable_types(capability: Mapping[str, Any]) -> tuple[str, ...]:
    """Resource types a CapabilityStatement's server-mode `rest` lists with `search-type`."""
    found: list[str] = []
    for rest in _server_rests(capability):
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
    members: dict[str, None] = {}  # ordered, and a set: groups have 10,000s of members
    for member in group.get("member") or []:
        if not isinstance(member, Mapping) or member.get("inactive") is True:
            continue
        reference = (member.get("entity") or {}).get("reference")
        found = patient_id(reference) if isinstance(reference, str) else None
        if found:
            members.setdefault(found)
    return tuple(members)


def patient_id(reference: str) -> str | None:
    """The id of a Patient reference: `Patient/123`, an absolute `.../Patient/123`, or either
    with `/_history/n`; None for anything else."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient" and FHIR_ID.match(parts[-1]):
        return parts[-1]
    return None


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
    if not FHIR_ID.match(group_id):
        raise BulkDataError(400, Issue("invalid", f"{group_id!r} is not a FHIR id", "Group.id"))
    url = f"{base_url.rstrip('/')}/Group/{group_id}"
    missing = Issue("not-found", f"Group/{group_id} was not found on the FHIR server", "Group.id")
    group = _read_json(http, url, f"Group/{group_id}", missing)
    if group.get("resourceType") != "Group":
        raise BulkDataError(
            502, Issue("exception", f"Group/{group_id}: the FHIR server answered a non-Group")
        )
    return group
