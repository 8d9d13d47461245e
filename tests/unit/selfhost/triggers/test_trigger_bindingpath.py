"""Blob trigger path patterns and output path templates (WebJobs binding expressions)."""

from __future__ import annotations

import datetime as dt

import pytest

from selfhost.triggers.bindingpath import (
    BindingExpressionError,
    BlobPathPattern,
    format_template,
    split_blob_path,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("path", "blob", "expected"),
    [
        ("samples/{name}", "a/b.txt", {"name": "a/b.txt"}),  # spans virtual folders
        ("samples/{blobname}.{blobextension}", "x.y.z", {"blobname": "x.y", "blobextension": "z"}),
        ("inbox/img-{name}.png", "img-cat.png", {"name": "cat"}),
        ("inbox/img-{name}.png", "img-cat.jpg", None),  # literal suffix filters
        ("inbox/img-{name}.png", "IMG-cat.png", None),  # case-sensitive like the SDK's regex
        ("inbox/{{x}}-{name}", "{x}-foo", {"name": "foo"}),  # {{ }} escape braces
        ("inbox/exact.txt", "exact.txt", {}),
        ("inbox/exact.txt", "exact.txt.bak", None),
        ("inbox/{name}", "line\nbreak", {"name": "line\nbreak"}),
    ],
)
def test_pattern_matching(path: str, blob: str, expected: dict[str, str] | None) -> None:
    assert BlobPathPattern.parse(path).match(blob) == expected


def test_prefix_and_container() -> None:
    pattern = BlobPathPattern.parse("%INBOX%/img-{name}.png", environ={"INBOX": "inbox"})
    assert (pattern.container, pattern.prefix, pattern.parameter_names) == ("inbox", "img-", ("name",))
    assert BlobPathPattern.parse("inbox/{name}").prefix == ""


@pytest.mark.parametrize(
    "path",
    ["{c}/x", "ccc/{a}-{a}", "ccc/{bad name}", "ccc/{open", "ccc/close}", "/", "cc/{name}", "Upper/{name}"],
)
def test_bad_patterns(path: str) -> None:
    with pytest.raises(BindingExpressionError):
        BlobPathPattern.parse(path)


def test_split_blob_path() -> None:
    assert split_blob_path("out/dir/f.txt") == ("out", "dir/f.txt")
    assert split_blob_path("out") == ("out", "")
    with pytest.raises(BindingExpressionError, match="container name"):
        split_blob_path("a--b/x")


def test_template_uses_binding_data_case_insensitively() -> None:
    data = {"Name": "cat", "data": {"Id": 7}}
    assert format_template("out/{name}-{DATA.id}.txt", data) == "out/cat-7.txt"


def test_template_builtins() -> None:
    now = dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)

    def fmt(template: str) -> str:
        return format_template(template, {}, now=lambda: now, new_guid=lambda: "guid-1")

    assert fmt("o/{rand-guid}.txt") == "o/guid-1.txt"
    assert fmt("o/{sys.randguid}") == "o/guid-1"
    assert fmt("o/{DateTime}") == "o/2024-01-02T03-04-05Z"
    assert fmt("o/{DateTime:yyyyMMdd-HHmmss.fff}") == "o/20240102-030405.678"
    assert format_template("o/%DIR%/{{lit}}", {}, environ={"DIR": "d"}) == "o/d/{lit}"


def test_template_missing_value_names_the_parameter() -> None:
    with pytest.raises(BindingExpressionError, match="nope"):
        format_template("o/{nope}", {"name": "x"})
    with pytest.raises(BindingExpressionError, match="UNSET"):
        format_template("o/%UNSET%", {}, environ={})
