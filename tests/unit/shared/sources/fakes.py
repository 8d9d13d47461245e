"""Builders for FHIR responses behind `httpx.MockTransport` (unit tests of the sources package)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.sources.fhir import FhirSource

BASE = "https://fhir.example.test/r4"
TOKEN = "s3cret-token-value"
FIXED_NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def resource(resource_type: str, resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": resource_type, "id": resource_id, **fields}


def entry(res: dict[str, Any] | None, mode: str | None = "match") -> dict[str, Any]:
    item: dict[str, Any] = {}
    if res is not None:
        item["resource"] = res
        item["fullUrl"] = f"{BASE}/{res.get('resourceType')}/{res.get('id')}"
    if mode is not None:
        item["search"] = {"mode": mode}
    return item


def bundle(entries: Iterable[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "self", "url": f"{BASE}/x"}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": list(entries)}


def outcome(diagnostics: str | None = None, details: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": "processing"}
    if diagnostics is not None:
        issue["diagnostics"] = diagnostics
    if details is not None:
        issue["details"] = {"text": details}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def json_response(status: int, document: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(document).encode(), headers=headers)


class Recorder:
    """A MockTransport handler that records requests and answers from a function."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def make_source(
    answer: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> tuple[FhirSource, Recorder]:
    recorder = Recorder(answer)
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    kwargs.setdefault("now", lambda: FIXED_NOW)
    kwargs.setdefault("types", ("Patient", "Observation"))
    return FhirSource(client, kwargs.pop("base_url", BASE), **kwargs), recorder


def always(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering every request alike; `body` is JSON unless it is bytes."""

    def answer(_request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return json_response(status, body, headers)

    return answer
