"""Auto-export configuration (seed 000): which apps' generated data is exported, where, and when.

One app setting, `AUTO_EXPORT_CONFIG`, a JSON object read and validated with the other settings
(an error names the setting and the field, `AUTO_EXPORT_CONFIG: apps.ct-recon.rules[1].action`):

    {"apps": {
       "ct-recon": {
         "enabled": true,
         "timing": "as_available",                  # or "session_end": only once the session completes
         "destination": {"kind": "http_put", "base_url": "https://partner.example/dav",
                         "url_template": "{base}/{study}/{session}/{path}", "create_parents": true,
                         "auth": "basic", "secret_name": "partner-put"}
                      | {"kind": "blob", "container": "exported", "path_prefix": "ct", "secret_name": null},
         "rules": [{"name": "no-scratch", "action": "exclude", "names": ["scratch/*", "*.tmp"]},
                   {"name": "dicom", "action": "include", "content_types": ["application/dicom"]}],
         "default": "exclude",                      # when no rule matches
         "options": {"concurrency": 4, "retry": {"first_retry_interval_ms": 5000, "max_attempts": 5},
                     "idle_timeout_minutes": 1440}}}}

Rules are tried in order and the first that matches decides; a rule with both `names` (glob
patterns on the path below the session's folder) and `content_types` (`application/dicom`,
`image/*`) matches when both do. Destination secrets are NAMES in the secret store (Key Vault),
shared by every session of the app and never deleted. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import Field, field_validator, model_validator

from shared._strict import Contract, Items, fail, validate
from shared.contracts import Destination, Retry
from shared.errors import ValidationError
from shared.retry import DEFAULT as DEFAULT_RETRY

__all__ = [
    "APP_NAME",
    "AppConfig",
    "AutoExportConfig",
    "Decision",
    "Rule",
    "SessionOptions",
    "parse_auto_export_config",
]

# An app's name is the first folder of its generated data (`{app}/{session}/{name}`).
APP_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
DEFAULT_IDLE_TIMEOUT_MINUTES: Final = 24 * 60
Pattern = Annotated[str, Field(min_length=1, max_length=256)]
ContentType = Annotated[
    str, Field(min_length=3, max_length=128, pattern=r"^[A-Za-z0-9.+-]+/(\*|[A-Za-z0-9.+-]+)$")
]


class Rule(Contract):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    action: Literal["include", "exclude"]
    names: Annotated[Items[Pattern], Field(max_length=64)] = ()
    content_types: Annotated[Items[ContentType], Field(max_length=64)] = ()

    @model_validator(mode="after")
    def _says_what(self) -> Rule:
        if not self.names and not self.content_types:
            fail("needs names or content_types (or both)", "names")
        return self

    def matches(self, path: str, content_type: str) -> bool:
        by_name = not self.names or any(fnmatch.fnmatchcase(path, p) for p in self.names)
        media = content_type.split(";", 1)[0].strip().lower()
        by_type = not self.content_types or any(_type_matches(t.lower(), media) for t in self.content_types)
        return by_name and by_type


def _type_matches(pattern: str, media: str) -> bool:
    if pattern.endswith("/*"):
        return media.startswith(pattern[:-1])
    return pattern == media


class SessionOptions(Contract):
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4  # items moving at once, per session
    retry: Retry = DEFAULT_RETRY  # attempts per item, and the first wait between them
    # A session that never gets its completion message ends this long after its last new data,
    # so no job waits for ever; a completion message after that opens it again.
    idle_timeout_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = DEFAULT_IDLE_TIMEOUT_MINUTES


@dataclass(frozen=True)
class Decision:
    export: bool
    rule: str  # the rule's name, or "default"


class AppConfig(Contract):
    enabled: bool = True
    timing: Literal["as_available", "session_end"] = "as_available"
    destination: Destination
    rules: Annotated[Items[Rule], Field(max_length=100)] = ()
    default: Literal["include", "exclude"] = "include"
    options: SessionOptions = SessionOptions()

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: dict[str, int] = {}
        for i, rule in enumerate(rules):
            if seen.setdefault(rule.name, i) != i:
                fail(f"rule name {rule.name!r} is used twice (also rules[{seen[rule.name]}])", f"[{i}].name")
        return rules

    def decide(self, path: str, content_type: str) -> Decision:
        """Export `path` (below the session's folder) of this content type? First match wins."""
        for rule in self.rules:
            if rule.matches(path, content_type):
                return Decision(rule.action == "include", rule.name)
        return Decision(self.default == "include", "default")


class AutoExportConfig(Contract):
    apps: dict[str, AppConfig] = {}

    @field_validator("apps")
    @classmethod
    def _app_names(cls, apps: dict[str, AppConfig]) -> dict[str, AppConfig]:
        for name in apps:
            if not APP_NAME.match(name):
                fail("app names are 1-63 letters, digits, '.', '_' or '-'", name)
        return apps

    def app(self, name: str) -> AppConfig | None:
        return self.apps.get(name)


def parse_auto_export_config(text: str | None) -> AutoExportConfig:
    """The configuration from the setting's JSON text (None: no app is auto-exported)."""
    if text is None:
        return AutoExportConfig()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("", f"is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict):
        raise ValidationError("", "must be a JSON object")
    return validate(AutoExportConfig, data)
