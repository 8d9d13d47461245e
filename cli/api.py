"""A small client of the service's HTTP API (`/api/exports`, `/api/batches`, `/api/jobs`).

Every failure becomes one `ApiError` line: no answer ("cannot reach <url>: is the service
running?"), or the HTTP status with the API's `error.message` and `error.field`. The key travels
in the `x-functions-key` header only (never in a URL), so no error text can carry it. I/O goes
through one `httpx` transport, which tests replace with `httpx.MockTransport`.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import quote

import httpx

from cli.config import KEY_ENV, Target
from cli.errors import ApiError

__all__ = ["ApiClient", "describe_error"]

KEY_HEADER = "x-functions-key"
JobKindPath = Literal["exports", "batches"]


def _reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_error(response: httpx.Response) -> str:
    """The line for an error answer: status, the API's message, and the field it names."""
    head = _reason(response.status_code)
    if response.status_code == 401:
        return f"{head}: the key is missing or not accepted (give --key or set {KEY_ENV})"
    try:
        body = response.json()
    except ValueError:
        body = None
    problem = body.get("error") if isinstance(body, dict) else None
    if isinstance(problem, dict) and problem.get("message"):
        message = _one_line(str(problem["message"]))
        field = problem.get("field")
        if field and not message.startswith(str(field)):
            message += f" (field {field})"
        return f"{head}: {message}"
    text = _one_line(response.text) if response.text.strip() else ""
    return f"{head}: {text}" if text else head


class ApiClient:
    """The API of one deployment. Methods return the answer's JSON object."""

    def __init__(
        self, target: Target, *, transport: httpx.BaseTransport | None = None, timeout: float = 30.0
    ) -> None:
        self.target = target
        self.timeout = timeout
        headers = {"accept": "application/json", "user-agent": "bulk-export-cli"}
        if target.key:
            headers[KEY_HEADER] = target.key
        self._http = httpx.Client(
            base_url=target.url, headers=headers, timeout=httpx.Timeout(timeout), transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the calls -----------------------------------------------------------------------------

    def submit(self, kind: JobKindPath, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /api/exports or /api/batches: `{"id", "state", "status_url"}`."""
        return self._call("POST", f"/api/{kind}", json=dict(body))

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /api/jobs/{id}: the job's status document, in its kind's shape."""
        return self._call("GET", f"/api/jobs/{_segment(job_id)}")

    def jobs(self, params: Mapping[str, str]) -> dict[str, Any]:
        """GET /api/jobs: `{"jobs": [...], "continuation"}`, newest first."""
        return self._call("GET", "/api/jobs", params={k: v for k, v in params.items() if v})

    def cancel(self, job_id: str) -> dict[str, Any]:
        """DELETE /api/jobs/{id}: the status document, with `cancel_requested`."""
        return self._call("DELETE", f"/api/jobs/{_segment(job_id)}")

    def retry(self, job_id: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST /api/jobs/{id}/retry (with the job's secrets again, if it had any)."""
        return self._call(
            "POST", f"/api/jobs/{_segment(job_id)}/retry", json=dict(body) if body is not None else None
        )

    # -- transport -----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        url = self.target.url
        try:
            response = self._http.request(method, path, params=params, json=json)
        except httpx.ConnectError:
            raise ApiError(f"cannot reach {url}: is the service running?", transient=True) from None
        except httpx.TimeoutException:
            raise ApiError(f"no answer from {url} within {self.timeout:g} s", transient=True) from None
        except httpx.TransportError as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise ApiError(f"cannot reach {url}: {reason}", transient=True) from None
        if response.is_error:
            status = response.status_code
            raise ApiError(
                f"{method} {path}: {describe_error(response)}",
                status=status,
                transient=status == 429 or status >= 500,
            )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ApiError(
                f"{method} {path}: {_reason(response.status_code)} without a JSON object: "
                f"is {url} the bulk export service?",
                status=response.status_code,
            )
        return answer


def _segment(job_id: str) -> str:
    """A job id as one path segment (a `/` or `?` in it cannot reach another route)."""
    return quote(job_id, safe="")
