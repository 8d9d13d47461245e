"""Job records of every kind: the `JobStore` role (`base`), the Azure store, an in-memory twin.

`connect(connection)` is the store the service uses (Azurite locally, the host's storage in Azure).
"""

from __future__ import annotations

from shared.jobstore.azure import CONTAINER, AzureJobStore
from shared.jobstore.base import (
    DEFAULT_KIND,
    INDEXED_LABELS,
    JobKind,
    JobPage,
    JobStore,
    JobSummary,
    JobUpdate,
    JobView,
    ListQuery,
    OpenJob,
    PartUpdate,
    current_admission,
    index_key,
    new_record,
    open_job_of,
    summary_of,
    utc_now,
)
from shared.jobstore.memory import MemoryJobStore

__all__ = [
    "CONTAINER",
    "DEFAULT_KIND",
    "INDEXED_LABELS",
    "AzureJobStore",
    "JobKind",
    "JobPage",
    "JobStore",
    "JobSummary",
    "JobUpdate",
    "JobView",
    "ListQuery",
    "MemoryJobStore",
    "OpenJob",
    "PartUpdate",
    "connect",
    "index_key",
    "new_record",
    "current_admission",
    "open_job_of",
    "summary_of",
    "utc_now",
]


def connect(connection: str) -> JobStore:
    return AzureJobStore.connect(connection)
