"""Host keys on disk (selfhost.keys) and authLevel decisions (selfhost.http.auth)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from selfhost.http.auth import authorize_function, authorize_system, presented_key
from selfhost.keys import DURABLE_SYSTEM_KEY, HostKeys, KeysError, load_or_create_keys

pytestmark = pytest.mark.unit


def test_keys_are_created_once_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_keys(tmp_path)
    path = tmp_path / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data == {
        "master": first.master,
        "functionKeys": {"default": first.default_function_key},
        "systemKeys": {"durabletask_extension": first.durable_key},
    }
    assert len({first.master, first.default_function_key, first.durable_key}) == 3
    assert load_or_create_keys(tmp_path) == first


def test_missing_keys_are_added_and_existing_ones_kept(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text(json.dumps({"master": "m", "functionKeys": {"ci": "c"}}))
    keys = load_or_create_keys(tmp_path)
    assert keys.master == "m"
    assert keys.function_keys["ci"] == "c"
    assert keys.default_function_key and keys.durable_key
    assert (
        json.loads((tmp_path / "keys.json").read_text())["systemKeys"][DURABLE_SYSTEM_KEY] == keys.durable_key
    )


def test_unreadable_keys_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text("{not json")
    with pytest.raises(KeysError, match="keys.json"):
        load_or_create_keys(tmp_path)


KEYS = HostKeys(
    master="M", function_keys={"default": "F", "other": "G"}, system_keys={DURABLE_SYSTEM_KEY: "S"}
)


def test_header_key_wins_over_code() -> None:
    assert presented_key({"x-functions-key": "H"}, {"code": "Q"}) == "H"
    assert presented_key({}, {"code": "Q"}) == "Q"
    assert presented_key({}, {"code": ""}) is None


@pytest.mark.parametrize(
    ("level", "key", "allowed"),
    [
        ("anonymous", None, True),
        ("anonymous", "wrong", True),  # a wrong key does not hurt an anonymous function
        ("function", None, False),
        ("function", "wrong", False),
        ("function", "F", True),
        ("function", "G", True),
        ("function", "M", True),
        ("function", "S", False),  # system keys never satisfy function level
        ("admin", "F", False),
        ("admin", "M", True),
        ("ADMIN", "M", True),
        ("mystery", "F", False),  # unknown level: fail closed
    ],
)
def test_authorize_function(level: str, key: str | None, allowed: bool) -> None:
    assert authorize_function(level, key, KEYS) is allowed


def test_authorize_system_key_or_master_only() -> None:
    assert authorize_system(DURABLE_SYSTEM_KEY, "S", KEYS)
    assert authorize_system(DURABLE_SYSTEM_KEY, "M", KEYS)
    assert not authorize_system(DURABLE_SYSTEM_KEY, "F", KEYS)
    assert not authorize_system("blobs_extension", "S", KEYS)
    assert not authorize_system(DURABLE_SYSTEM_KEY, None, KEYS)
