"""A fake of the service's HTTP API for the CLI's unit tests, behind `httpx.MockTransport`.

`FakeApi` answers what the CLI calls (submit, show, list, cancel, retry) from a few dicts; a job's
`statuses` are the documents successive GETs return (the last one repeats), so a test scripts a
job's life. `FakeClock` lets `watch` run without sleeping. Every request is kept in `requests`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from typer.testing import CliRunner, Result

from cli.main import Runtime, app
from cli.watch import Clock

KEY = "fake-key-9f3b2c"
URL = "http://bulk.test"
CLEAN_ENV: dict[str, str | None] = {
    "BULK_EXPORT_URL": URL,
    "BULK_EXPORT_KEY": KEY,
    "BULK_EXPORT_REQUESTED_BY": None,
}


def batch_status(job_id: str, state: str, done: int = 0, items: int = 2, **extra: Any) -> dict[str, Any]:
    """A batch status document of `items` 1000-byte items, `done` of them succeeded."""
    counts: dict[str, int] = {"items": items}
    if done:
        counts["succeeded"] = done
    rest = items - done
    if rest:
        counts["cancelled" if state == "cancelled" else "failed" if state == "failed" else "queued"] = rest
    rows = [
        {"index": i, "item": f"scan-{i}.dcm", "state": "succeeded" if i < done else "queued",
         "bytes_done": 1000 if i < done else 0, "bytes_total": 1000, "attempts": 1 if i < done else 0,
         "last_error": None, "destination": None}
        for i in range(items)
    ]  # fmt: skip
    return {
        "id": job_id, "kind": "batch", "state": state, "requested_by": "tech@example.com",
        "labels": {"project": "p1"}, "created": "2026-11-22T06:57:55Z", "cancel_requested": False,
        "counts": counts, "bytes": {"done": 1000 * done, "total": 1000 * items}, "attempts": 0,
        "last_error": None, "items": rows, "items_offset": 0, "items_more": False, **extra,
    }  # fmt: skip


def export_status(job_id: str, state: str, resources: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id, "kind": "fhir-export", "state": state, "requested_by": "engineer@example.com",
        "labels": {}, "created": "2026-11-22T06:57:55Z",
        "progress": {"Patient": {"state": state, "resources": resources, "files": 1, "bytes": 300 * resources,
                                 "pages": 1}},
        "last_error": None, "output": [{"type": "Patient", "name": "Patient-1.ndjson"}], **extra,
    }  # fmt: skip


@dataclass
class FakeApi:
    key: str = KEY
    statuses: dict[str, list[dict[str, Any] | httpx.Response]] = field(default_factory=dict)
    listing: dict[str, Any] = field(default_factory=lambda: {"jobs": [], "continuation": None})
    requests: list[httpx.Request] = field(default_factory=list)
    next_id: str = "job-1"
    errors: dict[tuple[str, str], httpx.Response] = field(default_factory=dict)  # (method, path)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("x-functions-key") != self.key:
            return httpx.Response(401)  # the runtime and Azure answer 401 with no body
        path = request.url.path
        if (request.method, path) in self.errors:
            return self.errors[(request.method, path)]
        if request.method == "POST" and path in ("/api/batches", "/api/exports"):
            kind = path.rsplit("/", 1)[1]
            answer = {"id": self.next_id, "state": "queued", "status_url": f"{URL}/api/{kind}/{self.next_id}"}
            return httpx.Response(202, json=answer)
        if request.method == "GET" and path == "/api/jobs":
            return httpx.Response(200, json=self.listing)
        parts = path.split("/")  # "", "api", "jobs", id[, "retry"]
        job_id = unquote(parts[3]) if len(parts) >= 4 and parts[2] == "jobs" else ""
        if job_id not in self.statuses:
            return error(404, "not_found", f"no job {job_id!r}", "id")
        script = self.statuses[job_id]
        current = script[0]
        if request.method == "GET" and len(script) > 1:
            script.pop(0)
        if isinstance(current, httpx.Response):
            return current
        if request.method == "DELETE":
            return httpx.Response(202, json={**current, "cancel_requested": True})
        if request.method == "POST" and path.endswith("/retry"):
            if current["state"] != "failed":
                return error(409, "conflict", f"only a failed job can be retried; job {job_id} is "
                                              f"{current['state']}", "state")  # fmt: skip
            return httpx.Response(202, json={**current, "state": "queued"})
        return httpx.Response(200, json=current)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def error(status: int, code: str, message: str, field_name: str | None = None) -> httpx.Response:
    problem = {"code": code, "message": message, **({"field": field_name} if field_name else {})}
    return httpx.Response(status, json={"error": problem})


@dataclass
class FakeClock:
    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, sleep=self.sleep)


def run_cli(
    args: Sequence[str],
    api: FakeApi | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: FakeClock | None = None,
    env: dict[str, str | None] | None = None,
    stdin: str | None = None,
) -> Result:
    """`bulk-export ARGS` against `api` (or `transport`), with a clean environment."""
    runtime = Runtime(
        transport=transport or (api or FakeApi()).transport(),
        clock=(clock or FakeClock()).clock(),
        key_files=(),
    )
    return CliRunner().invoke(app, list(args), obj=runtime, env={**CLEAN_ENV, **(env or {})}, input=stdin)


def refuse(message: str) -> Callable[[httpx.Request], httpx.Response]:
    """A transport handler that fails like an unreachable server."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(message, request=request)

    return handler
