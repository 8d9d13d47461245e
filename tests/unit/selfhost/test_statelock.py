"""The single-runtime lock on a state folder (selfhost.statelock)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from selfhost.statelock import StateLock, StateLockedError

pytestmark = pytest.mark.unit


def test_second_holder_is_refused_with_the_first_pid(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with StateLock(state):
        # flock is per open file description, so a second open in this process conflicts too.
        with pytest.raises(StateLockedError) as caught:
            StateLock(state).acquire()
        assert caught.value.pid == os.getpid()
        assert (
            str(caught.value) == f"another runtime is already using state folder {state} (pid {os.getpid()})"
        )


def test_lock_is_free_again_after_release(tmp_path: Path) -> None:
    first = StateLock(tmp_path)
    first.acquire()
    first.release()
    with StateLock(tmp_path) as again:
        assert again.path.read_text().strip() == str(os.getpid())
