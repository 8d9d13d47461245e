"""Host keys on disk (selfhost.keys), which key a request presented, and authLevel decisions
(selfhost.http.auth)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from selfhost.http.auth import authorize_function, authorize_system, presented_key
from selfhost.keys import (
    DURABLE_SYSTEM_KEY,
    HostKeys,
    KeyMatch,
    KeysError,
    key_name_problem,
    key_value_problem,
    keys_from_json,
    load_or_create_keys,
)

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


# --- which key matched (named keys, hostile bytes) -----------------------------------------------


def test_identify_names_the_key_and_its_kind() -> None:
    assert KEYS.identify("M") == KeyMatch("master", "master")
    assert KEYS.identify("F") == KeyMatch("function", "default")
    assert KEYS.identify("G") == KeyMatch("function", "other")
    assert KEYS.identify("S") == KeyMatch("system", DURABLE_SYSTEM_KEY)
    assert KEYS.identify("wrong") is None
    assert KEYS.identify("") is None and KEYS.identify(None) is None


@pytest.mark.parametrize("hostile", ["\udcff", "F\udcff", "\ud800", "é", "F\x00", "F" * 10_000])
def test_hostile_candidates_are_just_wrong_keys(hostile: str) -> None:
    # aiohttp keeps a header byte 0xff as the lone surrogate "\udcff": encoding it used to raise
    # UnicodeEncodeError, a 500 before authentication.
    assert KEYS.identify(hostile) is None
    assert not authorize_function("function", hostile, KEYS)
    assert not authorize_system(DURABLE_SYSTEM_KEY, hostile, KEYS)
    assert not KEYS.is_master(hostile)


def test_value_in_use_sees_every_kind_of_key() -> None:
    assert KEYS.value_in_use("M") and KEYS.value_in_use("S") and KEYS.value_in_use("G")
    assert not KEYS.value_in_use("G", except_function_key="other")
    assert not KEYS.value_in_use("new")


@pytest.mark.parametrize("name", ["alice", "alice@example.org", "ci-bot_2.x", "a" * 128, "default"])
def test_good_key_names(name: str) -> None:
    assert key_name_problem(name) is None


BAD_NAMES = ["", "a" * 129, "two words", "a/b", "a:b", "ünï", "x\x00", "admin", "ADMIN", "master", "_mAster"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_key_names(name: str) -> None:
    assert key_name_problem(name) is not None


def test_key_values_must_be_long_url_safe_ascii() -> None:
    assert key_value_problem("A" * 16) is None
    assert key_value_problem("abc-DEF_ghi.jkl~mno+pqr/stu=") is None
    for bad in ["short", "A" * 257, "A" * 15 + " ", "A" * 15 + "é", "A" * 15 + "&"]:
        assert key_value_problem(bad) is not None, bad


def test_a_bad_key_name_in_keys_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text(json.dumps({"master": "m", "functionKeys": {"a b": "c"}}))
    with pytest.raises(KeysError, match="bad key name 'a b'"):
        load_or_create_keys(tmp_path)
    (tmp_path / "keys.json").write_text(json.dumps({"master": "m", "functionKeys": {"ci": 3}}))
    with pytest.raises(KeysError, match="functionKeys.ci must be a non-empty string"):
        load_or_create_keys(tmp_path)


def test_missing_keys_come_from_the_fallback_when_reloading(tmp_path: Path) -> None:
    keys = keys_from_json({"functionKeys": {"alice": "A" * 16}}, tmp_path / "keys.json", fallback=KEYS)
    assert (keys.master, keys.default_function_key, keys.durable_key) == ("M", "F", "S")
    assert keys.function_keys["alice"] == "A" * 16
