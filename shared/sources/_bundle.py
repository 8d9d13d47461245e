"""Read one `searchset` Bundle into NDJSON bytes and its `next` link (pure, no I/O).

Only entries that are search matches are exported: `search.mode == "match"` or no mode at all
(servers may omit it). `outcome` entries (OperationOutcome warnings such as "unknown parameter
ignored") are skipped, as are `include` entries, which the export never asks for. Anything that
is not what FHIR promises raises `SourceDataError` naming the type, the page URL and the entry.
Resources of a search with `_elements` are marked SUBSETTED in `meta.tag` (the Bulk Data IG's
rule) unless the server already did.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from shared.errors import SourceDataError

__all__ = ["SUBSETTED_TAG", "ParsedPage", "mark_subsetted", "parse_searchset"]

log = logging.getLogger(__name__)

_SKIPPED_MODES = frozenset({"outcome", "include"})
SUBSETTED_TAG: dict[str, str] = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}


@dataclass(frozen=True)
class ParsedPage:
    ndjson: bytes
    count: int
    next_url: str | None
    ids: tuple[str, ...] = ()  # of each line, in order


def _fail(resource_type: str, url: str, problem: str) -> SourceDataError:
    return SourceDataError(f"{resource_type} page {url}: {problem}")


def _next_link(bundle: dict[str, Any], resource_type: str, url: str) -> str | None:
    links = bundle.get("link") or []
    if not isinstance(links, list):
        raise _fail(resource_type, url, "Bundle.link is not a list")
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            target = link.get("url")
            if not isinstance(target, str) or not target:
                raise _fail(resource_type, url, "the next link has no url")
            # The spec wants absolute URLs; resolving a relative one costs nothing and helps.
            return urljoin(url, target)
    return None


def _serialize(resource: dict[str, Any]) -> bytes:
    # Compact, UTF-8, one line: json.dumps escapes newlines inside strings, so `\n` only ends lines.
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def mark_subsetted(resource: dict[str, Any]) -> None:
    """Add the SUBSETTED tag to `meta.tag`, unless it is there already."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        meta = resource["meta"] = {}
    tags = meta.get("tag")
    if not isinstance(tags, list):
        tags = meta["tag"] = []
    for tag in tags:
        if (
            isinstance(tag, dict)
            and tag.get("code") == SUBSETTED_TAG["code"]
            and tag.get("system") == SUBSETTED_TAG["system"]
        ):
            return
    tags.append(dict(SUBSETTED_TAG))


def parse_searchset(body: bytes, resource_type: str, url: str, *, subsetted: bool = False) -> ParsedPage:
    """Validate a searchset page of `resource_type` read from `url` (already redacted);
    `subsetted`: the search asked for `_elements`, so every resource is marked SUBSETTED."""
    try:
        bundle: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(resource_type, url, f"response is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _fail(resource_type, url, "response is not a Bundle")
    if bundle.get("type") != "searchset":
        raise _fail(resource_type, url, f"Bundle.type is {bundle.get('type')!r}, expected 'searchset'")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise _fail(resource_type, url, "Bundle.entry is not a list")

    lines: list[bytes] = []
    ids: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _fail(resource_type, url, f"entry {index} is not an object")
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        resource = entry.get("resource")
        found_type = resource.get("resourceType") if isinstance(resource, dict) else None
        # Some servers omit the mode on their warnings; an OperationOutcome is never a match for a
        # search on another type, so it is treated as an outcome entry.
        unmarked_outcome = mode is None and found_type == "OperationOutcome" and resource_type != found_type
        if mode in _SKIPPED_MODES or unmarked_outcome:
            if found_type == "OperationOutcome":
                log.info("%s page %s: server outcome entry skipped", resource_type, url)
            continue
        if mode not in (None, "match"):
            raise _fail(resource_type, url, f"entry {index} has unknown search.mode {mode!r}")
        if not isinstance(resource, dict):
            raise _fail(resource_type, url, f"entry {index} has no resource")
        if found_type != resource_type:
            raise _fail(resource_type, url, f"entry {index} is a {found_type!r}, expected {resource_type}")
        resource_id = resource.get("id")
        if not isinstance(resource_id, str) or not resource_id:
            raise _fail(resource_type, url, f"entry {index} has no id")
        if subsetted:
            mark_subsetted(resource)
        lines.append(_serialize(resource))
        ids.append(resource_id)

    next_url = _next_link(bundle, resource_type, url)
    return ParsedPage(ndjson=b"".join(lines), count=len(lines), next_url=next_url, ids=tuple(ids))
