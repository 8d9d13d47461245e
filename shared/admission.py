"""Caps on running jobs: whether a queued job may start now, or waits its turn (pure).

`MAX_RUNNING_JOBS_PER_USER` caps the jobs of one requester (`requested_by`, any kind, compared
without case); `MAX_RUNNING_JOBS_PER_KIND` the jobs of one kind, all requesters together. A job
over a cap stays `queued` and starts in line when earlier ones end. `decide` is the rule, from
the unfinished jobs alone (`OpenJob`: requester, kind, place in line, started or not):

 1. started jobs (running, retrying, or admitted and still preparing) hold their places first,
    whatever their place in line (a cap lowered under running jobs lets them finish);
 2. then the queued jobs in line order (`submitted` to the microsecond, then the id): each is
    admitted while its requester and its kind are under their caps, and then holds places too;
 3. the job asked about is admitted when step 2 admits it.

No lock is needed: every instance computes the same answer from the same jobs, and a job keeps
its place however late its orchestration asks. A job held back by its requester's cap takes no
place of its kind, so one requester's long queue does not hold back the others' jobs.

Sessions are capped like the others, per kind and per their `requested_by`; a session without
a named requester (`auto-export@sessions.invalid`, the service itself) is in `uncapped_users`
and counts per kind only. `MAX_OPEN_JOBS_PER_USER` bounds the line itself: a requester with
that many unfinished jobs has a new one refused (`open_cap_reason`), so one client's loop cannot
fill the job store with waiting jobs that each poll it. The module also holds the admission
activity's contracts and the back-off of a waiting job. No I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Final

from pydantic import BeforeValidator

from shared._strict import Contract
from shared.jobstore.base import OpenJob

__all__ = [
    "ADMIT_ACTIVITY",
    "MAX_WAIT_S",
    "MIN_WAIT_S",
    "Admission",
    "AdmitTask",
    "Decision",
    "Limits",
    "decide",
    "open_cap_reason",
    "wait_s",
]

ADMIT_ACTIVITY: Final = "job_admit"
# A waiting job asks again after a quarter of the time it has waited, within these bounds: a
# short queue moves within seconds, a long one costs a read every half minute per waiting job.
MIN_WAIT_S: Final = 2.0
MAX_WAIT_S: Final = 30.0


@dataclass(frozen=True)
class Limits:
    """The caps; 0 (or a kind left out) is no cap."""

    per_user: int = 0
    per_kind: Mapping[str, int] = field(default_factory=dict)
    uncapped_users: frozenset[str] = frozenset()  # lower case
    open_per_user: int = 0  # unfinished jobs of one requester, queued ones included

    def applies(self, job: OpenJob) -> bool:
        """Whether a cap holds `job` back at all (else it starts at once, and nobody counts it)."""
        return self.user_capped(job) or self.per_kind.get(job.kind, 0) > 0

    def user_capped(self, job: OpenJob) -> bool:
        return self.per_user > 0 and _user(job) not in self.uncapped_users


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str | None = None  # why it waits, for a person: "waiting for 2 earlier jobs of ..."


def decide(job: OpenJob, open_jobs: Iterable[OpenJob], limits: Limits) -> Decision:
    """Whether `job` may start now, given every unfinished job (`job` among them or not)."""
    if job.started or not limits.applies(job):
        return Decision(admitted=True)
    jobs = {j.job_id: j for j in open_jobs}
    jobs[job.job_id] = job
    users: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for other in jobs.values():
        if other.started:
            users[_user(other)] += 1
            kinds[other.kind] += 1
    user_cap, kind_cap = limits.per_user, limits.per_kind.get(job.kind, 0)
    kind_ahead = 0  # earlier queued jobs of the kind not held back by their own user cap
    for other in sorted((j for j in jobs.values() if not j.started), key=lambda j: j.order):
        if other.job_id == job.job_id:
            break
        user_full, kind_full = _full(other, users, kinds, limits)
        if other.kind == job.kind and not user_full:
            kind_ahead += 1
        if not (user_full or kind_full):
            users[_user(other)] += 1
            kinds[other.kind] += 1
    user_full, kind_full = _full(job, users, kinds, limits)
    if not (user_full or kind_full):
        return Decision(admitted=True)
    reasons = []
    if user_full:
        ahead = sum(1 for j in jobs.values() if _user(j) == _user(job) and _before(j, job))
        reasons.append(
            f"waiting for {_jobs(ahead)} of {job.requested_by} (MAX_RUNNING_JOBS_PER_USER={user_cap})"
        )
    if kind_full:
        ahead = kind_ahead + sum(1 for j in jobs.values() if j.kind == job.kind and j.started)
        reasons.append(
            f"waiting for {_jobs(ahead, job.kind)} (MAX_RUNNING_JOBS_PER_KIND {job.kind}={kind_cap})"
        )
    return Decision(admitted=False, reason="; ".join(reasons))


def open_cap_reason(requested_by: str, open_jobs: Iterable[OpenJob], limits: Limits) -> str | None:
    """Why a new job of `requested_by` is refused (they have as many unfinished jobs as
    MAX_OPEN_JOBS_PER_USER allows), or None when it may be accepted."""
    user = requested_by.lower()
    if limits.open_per_user <= 0 or user in limits.uncapped_users:
        return None
    count = sum(1 for j in open_jobs if _user(j) == user)
    if count < limits.open_per_user:
        return None
    return (f"{requested_by} has {count} unfinished jobs (MAX_OPEN_JOBS_PER_USER={limits.open_per_user}); "
            "wait for some to end or cancel some")  # fmt: skip


def wait_s(waited_s: float) -> float:
    """How long a job that has waited `waited_s` seconds waits before it asks again."""
    return min(MAX_WAIT_S, max(MIN_WAIT_S, waited_s / 4))


def _full(job: OpenJob, users: Counter[str], kinds: Counter[str], limits: Limits) -> tuple[bool, bool]:
    """Whether the job's requester, and its kind, have no place left."""
    kind_cap = limits.per_kind.get(job.kind, 0)
    user_full = limits.user_capped(job) and users[_user(job)] >= limits.per_user
    return user_full, kind_cap > 0 and kinds[job.kind] >= kind_cap


def _user(job: OpenJob) -> str:
    return job.requested_by.lower()


def _before(other: OpenJob, job: OpenJob) -> bool:
    return other.job_id != job.job_id and (other.started or other.order < job.order)


def _jobs(count: int, kind: str = "") -> str:
    what = f"{kind} job" if kind else "job"
    return f"{count} earlier {what}{'' if count == 1 else 's'}"


class AdmitTask(Contract):
    """The admission activity's input: the job that asks, and the run its orchestration runs."""

    job_id: str
    run: int = 0


class Admission(Contract):
    """The admission activity's answer: start now, stop (cancelled or already ended), or wait
    `wait_s` seconds and ask again; `reason` is what the job's status says meanwhile."""

    admitted: bool = False
    cancelled: bool = False
    reason: str | None = None
    wait_s: Annotated[float, BeforeValidator(lambda v: float(v) if type(v) is int else v)] = 0.0
