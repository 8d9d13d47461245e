"""Strict readers for JSON-shaped input: every value is type-checked and every error names its field.

`ObjectReader` wraps one JSON object at a field path (`"options.retry"`); each accessor consumes a
key, and `finish()` rejects the keys nobody asked for, so unknown fields can never slip through.
Also the small value checks the contracts and the settings share (URLs, e-mail, container names).
This module must not know about exports: it only reads and checks values.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final, TypeVar, overload
from urllib.parse import urlsplit

from shared.errors import ValidationError

# Simple on purpose: the mail server is the real judge; this catches typos and non-addresses.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
# Azure container names: 3-63 chars, lowercase letters, digits and single dashes, not at the ends.
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
# FHIR resource type names are PascalCase letters (Patient, MedicationRequest); anything else
# would also let a caller walk a URL path (`../`). The one pattern the contracts, the source and
# the Bulk Data front door check type names with.
RESOURCE_TYPE: Final = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
# FHIR instant: full date, time with seconds, optional fraction, mandatory zone (FHIR R4 `instant`).
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


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
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValidationError(field, "must be an e-mail address")
    return value


def check_container_name(field: str, value: str) -> str:
    if not _CONTAINER.match(value):
        raise ValidationError(
            field, "must be 3-63 lowercase letters, digits or single dashes, starting and ending alphanumeric"
        )
    return value


def check_instant(field: str, value: str) -> str:
    """An ISO-8601 instant with seconds and a time zone; returned unchanged (servers take the text)."""
    if not _INSTANT.match(value):
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


def read_schema_version(reader: ObjectReader) -> int:
    version = reader.integer("schema_version", SCHEMA_VERSION, lo=1, hi=2**31)
    if version > SCHEMA_VERSION:
        raise ValidationError(reader.field("schema_version"), f"{version} is newer than {SCHEMA_VERSION}")
    return version
