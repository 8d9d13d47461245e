"""The live key store (selfhost.keystore): admin-API changes persist at once; hand edits of
keys.json apply without a restart; an unusable edit is ignored."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from selfhost.keys import DEFAULT_FUNCTION_KEY, HostKeys, KeyMatch
from selfhost.keystore import InvalidKeyChange, KeyConflict, KeyStore

pytestmark = pytest.mark.unit

VALUE = "alice-key-0123456789"


def on_disk(tmp_path: Path) -> dict[str, object]:
    return dict(json.loads((tmp_path / "keys.json").read_text()))


def touch_later(path: Path) -> None:
    """Make sure the edit is seen even on a file system with coarse timestamps."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_put_creates_then_replaces_and_persists_privately(tmp_path: Path) -> None:
    store = KeyStore.open(tmp_path)
    assert store.put_function_key("alice@example.org", VALUE) == (True, VALUE)
    assert store.current.identify(VALUE) == KeyMatch("function", "alice@example.org")
    assert on_disk(tmp_path)["functionKeys"] == {
        DEFAULT_FUNCTION_KEY: store.current.default_function_key,
        "alice@example.org": VALUE,
    }
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    created, generated = store.put_function_key("alice@example.org", None)
    assert not created and generated != VALUE and len(generated) >= 40
    assert store.current.identify(VALUE) is None
    assert KeyStore.open(tmp_path).current == store.current  # what a restart would load


def test_delete(tmp_path: Path) -> None:
    store = KeyStore.open(tmp_path)
    store.put_function_key("bob", VALUE)
    assert store.delete_function_key("bob") is True
    assert store.delete_function_key("bob") is False
    assert "bob" not in on_disk(tmp_path)["functionKeys"]  # type: ignore[operator]
    with pytest.raises(InvalidKeyChange, match="default key cannot be deleted"):
        store.delete_function_key(DEFAULT_FUNCTION_KEY)


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [("a b", VALUE, "name"), ("admin", VALUE, "name"), ("x" * 129, VALUE, "name"), ("bob", "short", "value")],
)
def test_bad_changes_are_refused_naming_the_field(name: str, value: str, field: str) -> None:
    store = KeyStore(HostKeys("M" * 16, {"default": "F" * 16}, {"durabletask_extension": "S" * 16}))
    with pytest.raises(InvalidKeyChange) as caught:
        store.put_function_key(name, value)
    assert caught.value.field == field


def test_a_value_another_key_has_is_a_conflict() -> None:
    store = KeyStore(HostKeys("M" * 16, {"default": "F" * 16}, {"durabletask_extension": "S" * 16}))
    for taken in ("M" * 16, "F" * 16, "S" * 16):
        with pytest.raises(KeyConflict):
            store.put_function_key("bob", taken)
    store.put_function_key("bob", VALUE)
    store.put_function_key("bob", VALUE)  # its own value again is fine


def test_a_hand_edit_applies_without_a_restart(tmp_path: Path) -> None:
    store = KeyStore.open(tmp_path)
    data = on_disk(tmp_path)
    data["functionKeys"] = {**data["functionKeys"], "carol": VALUE}  # type: ignore[dict-item]
    (tmp_path / "keys.json").write_text(json.dumps(data))
    touch_later(tmp_path / "keys.json")
    assert store.current.identify(VALUE) == KeyMatch("function", "carol")


def test_an_unusable_hand_edit_keeps_the_keys_in_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore.open(tmp_path)
    before = store.current
    (tmp_path / "keys.json").write_text("{not json")
    touch_later(tmp_path / "keys.json")
    assert store.current == before
    assert "Ignoring the changed keys file" in caplog.text
    (tmp_path / "keys.json").unlink()
    assert store.current == before
    store.put_function_key("dave", VALUE)  # the next change writes every key back
    assert on_disk(tmp_path)["master"] == before.master


def test_a_hand_edit_missing_the_default_key_keeps_it(tmp_path: Path) -> None:
    store = KeyStore.open(tmp_path)
    default = store.current.default_function_key
    (tmp_path / "keys.json").write_text(json.dumps({"master": store.current.master, "functionKeys": {}}))
    touch_later(tmp_path / "keys.json")
    assert store.current.default_function_key == default
