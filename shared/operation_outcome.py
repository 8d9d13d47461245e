"""FHIR OperationOutcomes of the Bulk Data front door: `Issue`, `BulkDataError` (a refusal with
its HTTP status), and the OperationOutcome document, as the kick-off answers it and as the lines
of a manifest's error file. Pure; re-exported by `shared.bulkdata`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.errors import PermanentError

__all__ = ["BulkDataError", "Issue", "operation_outcome", "outcomes_ndjson"]


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


def outcomes_ndjson(issues: tuple[Issue, ...] | list[Issue]) -> bytes:
    """One OperationOutcome per issue, one a line: the NDJSON of a manifest's `error` file."""
    return b"".join(json.dumps(operation_outcome(issue)).encode() + b"\n" for issue in issues)
