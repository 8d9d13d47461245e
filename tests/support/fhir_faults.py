"""Faults the FHIR test server (`tests.support.fhir_server`) injects into matching requests, and
the request record they match on; re-exported by `fhir_server`, where tests import them from."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ArmedFault", "BrokenKind", "Fault", "FaultKind", "FaultSet", "FhirRequest", "break_page"]

FaultKind = Literal["status", "slow", "broken", "drop", "truncate"]
BrokenKind = Literal["json", "not-bundle", "no-resource", "wrong-type"]


@dataclass(frozen=True)
class FhirRequest:
    """One request as the server saw it (kept in `FhirTestServer.requests`)."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    resource_type: str | None  # None for /metadata and unknown paths
    page: int | None  # 1-based page number of a search, None otherwise
    authorization: str | None

    def param(self, name: str) -> list[str]:
        return [value for key, value in self.params if key == name]


@dataclass(frozen=True)
class Fault:
    """A misbehaviour to inject into matching requests.

    kind="status":   answer `status` with an OperationOutcome (`diagnostics`) and `retry_after`.
    kind="slow":     wait `delay_s` seconds, then answer normally.
    kind="broken":   answer 200 with a malformed page (`broken`: json, not-bundle, no-resource,
                     wrong-type).
    kind="drop":     close the connection without answering.
    kind="truncate": send headers and half the body, then close.
    Matching: `resource_type` (None: any request, /metadata included), `page` (1-based; None: any),
    and `match` (a predicate on the request). `times` is how often it fires (None: always).
    """

    kind: FaultKind
    status: int = 503
    retry_after: str | None = None
    delay_s: float = 0.0
    broken: BrokenKind = "json"
    diagnostics: str = "injected fault"
    resource_type: str | None = None
    page: int | None = None
    times: int | None = 1
    match: Callable[[FhirRequest], bool] | None = None

    def applies_to(self, request: FhirRequest) -> bool:
        if self.resource_type is not None and request.resource_type != self.resource_type:
            return False
        if self.page is not None and request.page != self.page:
            return False
        return self.match is None or self.match(request)


class ArmedFault:
    """A fault added to a server: how often it has fired so far."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.fired = 0

    @property
    def exhausted(self) -> bool:
        return self.fault.times is not None and self.fired >= self.fault.times


class FaultSet:
    """Thread-safe list of armed faults; the first one that applies and is not exhausted fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[ArmedFault] = []

    def add(self, fault: Fault) -> ArmedFault:
        armed = ArmedFault(fault)
        with self._lock:
            self._armed.append(armed)
        return armed

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def pending(self) -> list[ArmedFault]:
        with self._lock:
            return [armed for armed in self._armed if not armed.exhausted]

    def take(self, request: FhirRequest) -> Fault | None:
        with self._lock:
            for armed in self._armed:
                if not armed.exhausted and armed.fault.applies_to(request):
                    armed.fired += 1
                    return armed.fault
        return None


def break_page(body: Any, how: BrokenKind) -> bytes:
    """A page that is wrong in the way `how` names (the search result itself is left intact)."""
    if how == "json":
        data = json.dumps(body).encode()
        return data[: max(1, len(data) // 2)]
    if how == "not-bundle":
        outcome = {"severity": "information", "code": "processing", "diagnostics": "not a bundle"}
        return json.dumps({"resourceType": "OperationOutcome", "issue": [outcome]}).encode()
    entries = body.get("entry") or [{"fullUrl": "x", "resource": {}, "search": {"mode": "match"}}]
    body = {**body, "entry": list(entries)}
    if how == "no-resource":
        body["entry"][0] = {"fullUrl": body["entry"][0].get("fullUrl"), "search": {"mode": "match"}}
    else:  # wrong-type
        body["entry"][0] = {
            **body["entry"][0],
            "resource": {**body["entry"][0]["resource"], "resourceType": "Basic"},
        }
    return json.dumps(body).encode()
