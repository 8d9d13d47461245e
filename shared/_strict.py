"""Strict reading of JSON-shaped input: every value is type-checked and every error names its field.

`Contract` is the pydantic base of every contract (frozen, strict, unknown fields refused, JSON
`null` read as absent); `validate` reads one and turns pydantic's errors into the project's
`ValidationError(field, message)` with a dotted path (`source.types[1]`). Validators report with
`fail`/`checked`, whose `at` extends that path below the field they check. `ObjectReader` is the
hand-written reader the HTTP PUT destination still uses. Also the small value checks the
contracts and the settings share (URLs, e-mail, container names).
This module must not know about exports: it only reads and checks values.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, NoReturn, Self, TypeVar, overload
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic import ValidationError as PydanticError
from pydantic_core import ErrorDetails, PydanticCustomError

from shared.errors import ValidationError

# Simple on purpose: the mail server is the real judge; this catches typos and non-addresses.
EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
# Azure container names: 3-63 chars, lowercase letters, digits and single dashes, not at the ends.
CONTAINER_NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
# FHIR resource type names are PascalCase letters (Patient, MedicationRequest); anything else
# would also let a caller walk a URL path (`../`). The one pattern the contracts, the source and
# the Bulk Data front door check type names with.
RESOURCE_TYPE: Final = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
# FHIR instant: full date, time with seconds, optional fraction, mandatory zone (FHIR R4 `instant`).
INSTANT: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def join(path: str, key: str | int) -> str:
    """`join("source", "types")` -> `source.types`; `join("source.types", 2)` -> `source.types[2]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_http_url(field: str, value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is the check: "host:abc" raises ValueError
    except ValueError:
        raise ValidationError(field, "must be an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(field, "must be an absolute http(s) URL")
    if parts.username or parts.password:
        # Credentials in a URL end up in logs and job records; they belong in the secret.
        raise ValidationError(field, "must not contain credentials")
    return value


def check_email(field: str, value: str) -> str:
    if len(value) > 254 or not EMAIL.match(value):
        raise ValidationError(field, "must be an e-mail address")
    return value


def check_container_name(field: str, value: str) -> str:
    if not CONTAINER_NAME.match(value):
        raise ValidationError(
            field, "must be 3-63 lowercase letters, digits or single dashes, starting and ending alphanumeric"
        )
    return value


def check_instant(field: str, value: str) -> str:
    """An ISO-8601 instant with seconds and a time zone; returned unchanged (servers take the text)."""
    if not INSTANT.match(value):
        raise ValidationError(field, "must be an ISO-8601 instant such as 2024-01-31T00:00:00Z")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError(field, "must be an ISO-8601 instant such as 2024-01-31T00:00:00Z") from exc
    return value


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING: Final = _Missing.MISSING
T = TypeVar("T")


class ObjectReader:
    """Reads one JSON object strictly. Call `finish()` once all expected keys were read.

    Every accessor takes an optional default; without one the key is required. JSON `null` counts
    as absent, so optional fields may be sent as null.
    """

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ValidationError(path or "body", "must be an object")
        for key in data:
            if not isinstance(key, str):
                raise ValidationError(path or "body", "keys must be strings")
        self._data: Mapping[str, object] = data
        self._path = path
        self._seen: set[str] = set()

    @property
    def path(self) -> str:
        return self._path or "body"

    def field(self, key: str) -> str:
        return join(self._path, key)

    def keys(self) -> list[str]:
        """The keys present, in input order (for objects whose keys are data, like labels)."""
        return list(self._data)

    def _get(self, key: str) -> object:
        self._seen.add(key)
        return self._data.get(key)

    def _absent(self, key: str, default: T | _Missing) -> T:
        if isinstance(default, _Missing):
            raise ValidationError(self.field(key), "is required")
        return default

    @overload
    def text(self, key: str, *, min_len: int = ..., max_len: int = ...) -> str: ...
    @overload
    def text(self, key: str, default: T, *, min_len: int = ..., max_len: int = ...) -> str | T: ...
    def text(self, key: str, default: object = MISSING, *, min_len: int = 1, max_len: int = 2048) -> object:
        value = self._get(key)
        if value is None:
            return self._absent(key, default)
        if not isinstance(value, str):
            raise ValidationError(self.field(key), "must be a string")
        if not min_len <= len(value) <= max_len:
            raise ValidationError(self.field(key), f"must be {min_len}..{max_len} characters")
        return value

    @overload
    def integer(self, key: str, *, lo: int, hi: int) -> int: ...
    @overload
    def integer(self, key: str, default: T, *, lo: int, hi: int) -> int | T: ...
    def integer(self, key: str, default: object = MISSING, *, lo: int, hi: int) -> object:
        value = self._get(key)
        if value is None:
            return self._absent(key, default)
        # bool is an int subclass in Python; `true` is not a page size.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(self.field(key), "must be an integer")
        if not lo <= value <= hi:
            raise ValidationError(self.field(key), f"must be between {lo} and {hi}")
        return value

    @overload
    def flag(self, key: str) -> bool: ...
    @overload
    def flag(self, key: str, default: T) -> bool | T: ...
    def flag(self, key: str, default: object = MISSING) -> object:
        value = self._get(key)
        if value is None:
            return self._absent(key, default)
        if not isinstance(value, bool):
            raise ValidationError(self.field(key), "must be true or false")
        return value

    @overload
    def texts(self, key: str, *, max_items: int = ..., max_len: int = ...) -> tuple[str, ...]: ...
    @overload
    def texts(
        self, key: str, default: T, *, max_items: int = ..., max_len: int = ...
    ) -> tuple[str, ...] | T: ...
    def texts(
        self, key: str, default: object = MISSING, *, max_items: int = 1000, max_len: int = 2048
    ) -> object:
        """A JSON list of non-empty strings, returned as a tuple (contracts are immutable)."""
        value = self._get(key)
        if value is None:
            return self._absent(key, default)
        if not isinstance(value, list | tuple):
            raise ValidationError(self.field(key), "must be a list of strings")
        if len(value) > max_items:
            raise ValidationError(self.field(key), f"must have at most {max_items} items")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item or len(item) > max_len:
                raise ValidationError(
                    join(self.field(key), i), f"must be a string of 1..{max_len} characters"
                )
        return tuple(value)

    @overload
    def nested(self, key: str) -> ObjectReader: ...
    @overload
    def nested(self, key: str, default: T) -> ObjectReader | T: ...
    def nested(self, key: str, default: object = MISSING) -> object:
        """A reader for the nested object at `key`, or `default` when the key is absent."""
        value = self._get(key)
        if value is None:
            return self._absent(key, default)
        return ObjectReader(value, self.field(key))

    def nested_list(self, key: str) -> list[ObjectReader]:
        """Readers for a JSON list of objects (`files[0]`, `files[1]`...); absent means empty."""
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise ValidationError(self.field(key), "must be a list of objects")
        return [ObjectReader(item, join(self.field(key), i)) for i, item in enumerate(value)]

    def finish(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise ValidationError(self.field(unknown[0]), "unknown field")


# Version of every top-level contract's dict shape. Readers accept older versions they still
# understand and refuse newer ones: a record written by a newer release must not be half-read.
SCHEMA_VERSION: Final = 1

M = TypeVar("M", bound=BaseModel)
V = TypeVar("V")
R = TypeVar("R")


# --- pydantic contracts --------------------------------------------------------------------------


def fail(message: str, at: str | int = "") -> NoReturn:
    """Refuse a value from a validator; `at` is the path below the validated field (`[2]`, `x.y`)."""
    where = f"[{at}]" if isinstance(at, int) else at
    raise PydanticCustomError("contract", "{message}", {"message": message, "at": where})


def checked(check: Callable[[str, V], R], value: V, at: str | int = "") -> R:
    """Run one of the `check_*(field, value)` functions inside a validator."""
    try:
        return check("", value)
    except ValidationError as exc:
        fail(exc.detail, _extend(f"[{at}]" if isinstance(at, int) else at, exc.field))


def _extend(path: str, below: str | int) -> str:
    if isinstance(below, int):
        return f"{path}[{below}]"
    if not below or below == "body":
        return path
    if below.startswith("["):
        return f"{path}{below}"
    return f"{path}.{below}" if path else below


def _message(error: ErrorDetails) -> str:
    """Our wording for pydantic's error types (never the input: it may be a secret)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    fixed = {
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "bool_type": "must be true or false",
        "model_type": "must be an object",
        "dict_type": "must be an object",
        "tuple_type": "must be a list",
        "list_type": "must be a list",
        "enum": "must be one of its values",
    }
    if kind in fixed:
        return fixed[kind]
    templates = {
        "contract": "{message}",
        "greater_than_equal": "must be at least {ge}",
        "less_than_equal": "must be at most {le}",
        "string_too_short": "must be at least {min_length} characters",
        "string_too_long": "must be at most {max_length} characters",
        "too_short": "must have at least {min_length} items",
        "too_long": "must have at most {max_length} items",
        "literal_error": "must be {expected}",
        "value_error": "{error}",
    }
    if kind in templates:
        return templates[kind].format(**ctx)
    return error["msg"]


def first_error(exc: PydanticError, path: str = "") -> ValidationError:
    """The first of pydantic's errors as ours, its `loc` tuple turned into a dotted field path."""
    error = exc.errors(include_url=False, include_input=False)[0]
    field = path
    for part in error["loc"]:
        field = _extend(field, part)
    if error["type"] == "contract":
        field = _extend(field, str((error.get("ctx") or {}).get("at", "")))
    return ValidationError(field or "body", _message(error))


def validate(model: type[M], data: object, path: str = "", context: dict[str, Any] | None = None) -> M:
    """Read `data` as a `model`; every error is a `ValidationError` whose field starts at `path`."""
    if not isinstance(data, Mapping):
        raise ValidationError(path or "body", "must be an object")
    try:
        return model.model_validate(dict(data), context=context)
    except PydanticError as exc:
        raise first_error(exc, path) from None


def nested(model: type[M], data: object, info: ValidationInfo, at: str) -> M:
    """Read a sub-object inside a validator; its errors name the path below `at`."""
    if not isinstance(data, Mapping):
        fail("must be an object", at)
    try:
        return model.model_validate(dict(data), context=info.context)
    except PydanticError as exc:
        error = first_error(exc, at)
        fail(error.detail, error.field)


def replace(obj: T, /, **changes: Any) -> T:
    """`dataclasses.replace` for contracts and dataclasses alike (a contract is validated again)."""
    if isinstance(obj, BaseModel):
        return type(obj)(**{**dict(obj), **changes})
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


def _as_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


# A JSON list read as a tuple: contracts are immutable (strict mode alone only takes tuples).
Items = Annotated[tuple[T, ...], BeforeValidator(_as_tuple)]
Count = Annotated[int, Field(ge=0, le=2**53)]  # 2**53: the largest integer every JSON reader keeps


class Contract(BaseModel):
    """Base of the contracts: frozen, strict (no `"1"` for 1, no `true` for 1), unknown fields
    refused, JSON `null` read as absent for fields with a default. `to_dict()`/`from_dict()` are
    the JSON shape (records and history); subclasses adapt it in `_prepare` (before validation)."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")
    _path: ClassVar[str] = ""  # where `from_dict` errors start by default

    @model_validator(mode="before")
    @classmethod
    def read_json_shape(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        fields = cls.model_fields
        present = {
            k: v for k, v in data.items() if not (v is None and k in fields and not fields[k].is_required())
        }
        return cls._prepare(present, info)

    @classmethod
    def _prepare(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Adapt the JSON shape before validation (`info.context` is None for constructor calls)."""
        return data

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = None) -> Self:
        return validate(cls, data, cls._path if path is None else path, context={"api": False})


def check_schema_version(version: int) -> int:
    if version > SCHEMA_VERSION:
        fail(f"{version} is newer than {SCHEMA_VERSION}")
    return version


SchemaVersion = Annotated[int, Field(ge=1, le=2**31, repr=False), AfterValidator(check_schema_version)]
