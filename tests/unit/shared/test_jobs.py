"""Job states: string values, the transition table, and terminal states that stay terminal."""

from __future__ import annotations

import itertools

import pytest

from shared.errors import PermanentError
from shared.jobs import (
    TERMINAL_STATES,
    InvalidTransitionError,
    JobState,
    can_transition,
    is_terminal,
    require_transition,
)

pytestmark = pytest.mark.unit

Q, R, RT, S, F, C = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.RETRYING,
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.CANCELLED,
)
ALLOWED = {
    (Q, R), (Q, RT), (Q, F), (Q, C),
    (R, RT), (R, S), (R, F), (R, C),
    (RT, R), (RT, F), (RT, C),
}  # fmt: skip


def test_states_are_plain_strings() -> None:
    assert [s.value for s in JobState] == [
        "queued",
        "running",
        "retrying",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert JobState("running") is R
    assert f"{R}" == "running"


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobState, JobState)))
def test_transition_table_is_exactly_the_allowed_set(current: JobState, target: JobState) -> None:
    assert can_transition(current, target) == ((current, target) in ALLOWED)


def test_terminal_states_have_no_way_out() -> None:
    assert {S, F, C} == TERMINAL_STATES
    for state in TERMINAL_STATES:
        assert is_terminal(state)
        assert not any(can_transition(state, target) for target in JobState)
    assert not any(is_terminal(s) for s in (Q, R, RT))


def test_retrying_must_run_again_before_succeeding() -> None:
    assert not can_transition(RT, S)
    assert can_transition(RT, R) and can_transition(R, S)


def test_every_state_is_reachable_from_queued() -> None:
    reached, frontier = {Q}, [Q]
    while frontier:
        state = frontier.pop()
        for target in JobState:
            if can_transition(state, target) and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(JobState)


def test_require_transition_raises_a_permanent_error() -> None:
    assert require_transition(Q, R) is R
    with pytest.raises(InvalidTransitionError) as info:
        require_transition(S, R)
    assert isinstance(info.value, PermanentError)
    assert "succeeded to running" in str(info.value)
