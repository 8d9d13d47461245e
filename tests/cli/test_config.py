"""Where the CLI finds the service and its key: options, environment, the local runtime's keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.config import Target, normalize_url, resolve_target
from cli.errors import ConfigError

pytestmark = pytest.mark.unit


def keys_file(tmp_path: Path, key: str = "local-key-1") -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"master": "m", "functionKeys": {"default": key}, "systemKeys": {}}))
    return path


def test_options_beat_the_environment_which_beats_the_local_keys(tmp_path: Path) -> None:
    files = [keys_file(tmp_path)]
    env = {"BULK_EXPORT_URL": "http://127.0.0.1:7072/", "BULK_EXPORT_KEY": "env-key"}
    assert resolve_target("http://localhost:7071/api", "opt-key", env, files) == Target(
        "http://localhost:7071", "opt-key", "--key"
    )
    assert resolve_target(None, None, env, files) == Target(
        "http://127.0.0.1:7072", "env-key", "BULK_EXPORT_KEY"
    )
    local = resolve_target(None, None, {}, files)
    assert (local.url, local.key, local.key_source) == ("http://127.0.0.1:7071", "local-key-1", str(files[0]))


def test_a_remote_url_never_gets_the_local_key(tmp_path: Path) -> None:
    target = resolve_target("https://bulk.azurewebsites.net", None, {}, [keys_file(tmp_path)])
    assert target.key is None


def test_the_key_stays_out_of_repr(tmp_path: Path) -> None:
    target = resolve_target(None, "secret-key-77", {}, [])
    assert "secret-key-77" not in repr(target) and "secret-key-77" not in str(target)


def test_missing_keys_are_no_error_and_bad_ones_name_the_file(tmp_path: Path) -> None:
    assert resolve_target(None, None, {}, [tmp_path / "absent.json"]).key is None
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json"):
        resolve_target(None, None, {}, [broken])


@pytest.mark.parametrize("url", ["127.0.0.1:7071", "ftp://host", "http://", "http://h/?code=x"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="--url"):
        normalize_url(url)
