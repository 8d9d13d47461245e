"""Sealed cursors: a next link with a token in it is stored encrypted, one without stays plain, and
sealed cursors open on every instance that shares the secret store; a lost or damaged key fails
permanently, naming the secret and never the cursor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import PermanentError, SourceDataError
from shared.secrets.base import check_secret_name
from shared.secrets.memory import MemorySecretStore
from shared.sources.cursor_seal import (
    MAX_SEALED_LENGTH,
    PREFIX,
    SEALING_KEY_SECRET,
    CursorSeal,
    key_secret,
    needs_sealing,
)

pytestmark = pytest.mark.unit

TOKEN = "next-link-token-5f2c9a"
WITH_TOKEN = f"https://fhir.example.test/r4?_getpages=abc&_getpagesoffset=50&token={TOKEN}"
PLAIN = "https://fhir.example.test/r4/Patient?_count=50&ct=MTA6Mw"


def seal_over(store: MemorySecretStore) -> CursorSeal:
    return CursorSeal(lambda: store)


def test_a_cursor_with_a_token_is_sealed_and_opens_again() -> None:
    store = MemorySecretStore()
    sealed = seal_over(store).seal(WITH_TOKEN)
    assert sealed is not None and sealed.startswith(PREFIX)
    assert TOKEN not in sealed and "fhir.example.test" not in sealed
    assert seal_over(store).unseal(sealed) == WITH_TOKEN  # another process, the same store
    kid = sealed.removeprefix(PREFIX).split(":")[0]
    assert sorted(store.values) == [SEALING_KEY_SECRET, key_secret(kid)]
    assert store.values[SEALING_KEY_SECRET] == store.values[key_secret(kid)]
    for name in store.values:
        assert check_secret_name("n", name) == name


def test_sealing_twice_gives_different_texts_that_open_alike() -> None:
    seal = seal_over(MemorySecretStore())
    first, second = seal.seal(WITH_TOKEN), seal.seal(WITH_TOKEN)
    assert first != second  # a fresh nonce each time
    assert seal.unseal(first) == seal.unseal(second) == WITH_TOKEN


def test_the_key_is_read_once_per_process() -> None:
    store = MemorySecretStore()
    seal = seal_over(store)
    for _ in range(5):
        assert seal.unseal(seal.seal(WITH_TOKEN)) == WITH_TOKEN
    assert store.reads == 1  # not found, then created


@pytest.mark.parametrize("cursor", [PLAIN, None, "0:1", "opaque-server-cursor"])
def test_cursors_without_credentials_stay_plain_and_never_touch_the_store(cursor: str | None) -> None:
    def no_store() -> MemorySecretStore:
        raise AssertionError("the secret store was used")

    seal = CursorSeal(no_store)
    assert seal.seal(cursor) == cursor
    assert seal.unseal(cursor) == cursor  # also a checkpoint written before sealing existed


@pytest.mark.parametrize(
    "cursor",
    [
        WITH_TOKEN,
        "https://fhir.example.test/r4/Patient?ct=1&access_token=abc",
        "https://fhir.example.test/r4/Patient?SIG=abc",
        "https://user:pass@fhir.example.test/r4/Patient?ct=1",
    ],
)
def test_what_redact_url_would_hide_is_sealed(cursor: str) -> None:
    assert needs_sealing(cursor)
    assert not needs_sealing(PLAIN)


def test_a_key_replaced_by_another_instance_is_read_again() -> None:
    store = MemorySecretStore()
    mine = seal_over(store)
    mine.seal(WITH_TOKEN)  # this process caches the first key
    store.values[SEALING_KEY_SECRET] = "written-by-a-racing-instance"
    theirs = seal_over(store).seal(WITH_TOKEN)
    assert mine.unseal(theirs) == WITH_TOKEN


def test_cursors_sealed_by_two_instances_racing_on_first_use_both_open_everywhere() -> None:
    store = MemorySecretStore()
    first, second = seal_over(store), seal_over(store)
    by_first = first.seal(WITH_TOKEN)
    current = store.values.pop(SEALING_KEY_SECRET)  # the second read before the first wrote
    by_second = second.seal(WITH_TOKEN)
    assert store.values[SEALING_KEY_SECRET] != current  # the second write won
    for instance in (seal_over(store), first, second):
        assert instance.unseal(by_first) == instance.unseal(by_second) == WITH_TOKEN


def test_a_lost_key_fails_permanently_naming_the_secret() -> None:
    store = MemorySecretStore()
    sealed = seal_over(store).seal(WITH_TOKEN)
    store.values.clear()
    with pytest.raises(PermanentError, match=SEALING_KEY_SECRET) as lost:
        seal_over(store).unseal(sealed)
    assert not store.values  # opening never creates a key
    store.values[SEALING_KEY_SECRET] = "another key"
    with pytest.raises(PermanentError, match="no longer holds") as other:
        seal_over(store).unseal(sealed)
    for exc in (lost.value, other.value):
        assert TOKEN not in str(exc) and (sealed or "") not in str(exc)


@given(st.integers(min_value=len(PREFIX) + 9, max_value=200), st.text(min_size=1, max_size=3))
def test_a_damaged_cursor_fails_permanently(cut: int, garbage: str) -> None:
    store = MemorySecretStore()
    sealed = seal_over(store).seal(WITH_TOKEN)
    assert sealed is not None
    damaged = sealed[:cut] + garbage + sealed[cut + len(garbage) :]
    if damaged == sealed:
        return
    with pytest.raises(PermanentError, match="does not decrypt|no longer holds") as caught:
        seal_over(store).unseal(damaged)
    assert TOKEN not in str(caught.value)


def test_a_next_link_too_long_for_a_checkpoint_is_a_source_error() -> None:
    long_link = WITH_TOKEN + "&pad=" + "x" * MAX_SEALED_LENGTH
    with pytest.raises(SourceDataError, match="too long") as caught:
        seal_over(MemorySecretStore()).seal(long_link)
    assert TOKEN not in str(caught.value)
