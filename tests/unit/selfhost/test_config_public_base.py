"""PUBLIC_BASE_URL as the runtime's public base (selfhost.config): checked once, at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfhost.config import ConfigError, load_host_config, parse_public_base_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "base"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("https://exports.example.org", "https://exports.example.org"),
        ("https://exports.example.org/", "https://exports.example.org"),
        (" http://127.0.0.1:7071 ", "http://127.0.0.1:7071"),
        ("https://example.org/bulk/", "https://example.org/bulk"),
    ],
)
def test_good_values(raw: str | None, base: str | None) -> None:
    assert parse_public_base_url(raw) == base


@pytest.mark.parametrize(
    "raw",
    [
        "exports.example.org",
        "ftp://example.org",
        "https://",
        "https://example.org:port",
        "https://user:secret@example.org",
        "https://example.org/?code=x",
        "https://example.org/#top",
        "https://exämple.org",
        "https://example.org/a b",
    ],
)
def test_bad_values_name_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL") as caught:
        parse_public_base_url(raw)
    assert "secret" not in str(caught.value)


def test_load_host_config_reads_it_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://exports.example.org/")
    assert load_host_config(tmp_path, tmp_path / "state").public_base_url == "https://exports.example.org"
    monkeypatch.delenv("PUBLIC_BASE_URL")
    assert load_host_config(tmp_path, tmp_path / "state").public_base_url is None
