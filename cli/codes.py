"""The exit codes of `bulk-export`: a script tells a job's outcome from them.

0  done: the command worked (`watch`: the job succeeded; `validate`: the export is valid)
1  `watch`: the job failed; `validate`: the export is invalid
2  `watch`: the job was cancelled
3  usage or API error (bad option, unreadable file, service unreachable, HTTP error; the
   reason is one line on stderr); `validate`: could not validate
4  `watch --timeout`: the job had not ended when the time was up
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "for_state"]


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    CANCELLED = 2
    ERROR = 3
    TIMEOUT = 4


TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})

_BY_STATE = {"succeeded": ExitCode.OK, "failed": ExitCode.FAILED, "cancelled": ExitCode.CANCELLED}


def for_state(state: str) -> ExitCode:
    """The exit code of a job that ended in `state` (a state that has not ended is an error)."""
    return _BY_STATE.get(state, ExitCode.ERROR)
