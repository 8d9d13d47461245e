"""Benchmark: listing 50 of 100,000 jobs filtered by `requested_by`, through the job store's index.

Seeds 100,000 jobs' index rows (as `AzureJobStore` writes them: one row in the "all" partition and
one in the requester's) into Azurite, spread over requesters with 100 jobs each, plus real records for one of
them; then times `AzureJobStore.list(requested_by=..., limit=50)` against the baseline a store
without a requester index would have: the same filter on the "all" partition (what reading every
job's summary amounts to), in the same run. Prints both latencies (best of --repeat) and the
ratio baseline / indexed (higher is better; target: listing stays flat as jobs grow).

Usage: .venv/bin/python -m bench.job_listing [--jobs 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

from azure.data.tables import TableServiceClient

from shared.jobstore import AzureJobStore, JobSummary, ListQuery, index_key
from shared.jobstore.azure import INDEX_TABLE, _user_partition
from tests.support.azurite import Azurite
from tests.support.ports import free_port

JOBS_PER_USER = 100  # so the requester asked for has 100 jobs, whatever --jobs is
BATCH = 100  # a table transaction holds at most 100 operations of one partition


class InMemoryAzurite(Azurite):
    """Azurite keeping its data in memory: with a disk location it rewrites its whole table file
    every few seconds, which makes seeding 200,000 rows take half an hour; the queries measured
    are the same either way."""

    def start(self) -> InMemoryAzurite:
        import subprocess

        from scripts.devservers import Options, azurite_command
        from tests.support.azurite import ROOT, _listening
        from tests.support.waiting import wait_until

        cmd = [
            *azurite_command(Options(app_root=ROOT, state_dir=self.location, ports=self.ports)),
            "--inMemoryPersistence",
        ]
        cmd = [c for i, c in enumerate(cmd) if c != "--location" and (i == 0 or cmd[i - 1] != "--location")]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        for port in (self.blob_port, self.queue_port, self.table_port):
            wait_until(lambda p=port: _listening(p), timeout=30, message=f"azurite port {port}")
        return self


def seed(connection: str, jobs: int) -> str:
    tables = TableServiceClient.from_connection_string(connection)
    table = tables.create_table_if_not_exists(INDEX_TABLE)
    rows: dict[str, list[dict[str, object]]] = {}
    for n in range(jobs):
        user = f"user{n % max(1, jobs // JOBS_PER_USER)}@example.com"
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_780_000_000 + n))
        job = JobSummary(uuid.uuid4().hex, "fhir-export", "succeeded", user, {}, created)
        row = {"RowKey": index_key(job), "job_id": job.job_id, "kind": job.kind, "state": job.state,
               "requested_by": user, "labels": "{}", "created": created}  # fmt: skip
        for partition in ("all", _user_partition(user)):
            rows.setdefault(partition, []).append({**row, "PartitionKey": partition})
    for partition_rows in rows.values():
        for i in range(0, len(partition_rows), BATCH):
            table.submit_transaction([("upsert", r) for r in partition_rows[i : i + BATCH]])
    return "user7@example.com"


def best(call: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        azurite = InMemoryAzurite(free_port(), free_port(), free_port(), Path(tmp)).start()
        try:
            started = time.perf_counter()
            user = seed(azurite.connection_string, args.jobs)
            print(f"seeded {args.jobs:,} jobs' index rows in {time.perf_counter() - started:.1f} s")
            store = AzureJobStore.connect(azurite.connection_string)
            query = ListQuery(requested_by=user, limit=50)
            page = store.list(query)
            assert len(page.jobs) == 50 and all(j.requested_by == user for j in page.jobs), page
            indexed = best(lambda: store.list(query), args.repeat)
            table = TableServiceClient.from_connection_string(azurite.connection_string).get_table_client(
                INDEX_TABLE
            )

            def scan_all() -> None:
                rows = table.query_entities(
                    "PartitionKey eq 'all' and requested_by eq @u", parameters={"u": user}
                )
                found = [r for _, r in zip(range(50), rows, strict=False)]
                assert len(found) == 50

            baseline = best(scan_all, args.repeat)
        finally:
            azurite.stop()
    print(json.dumps({"jobs": args.jobs, "indexed_s": round(indexed, 4), "scan_all_s": round(baseline, 4),
                      "ratio_scan_over_indexed": round(baseline / indexed, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
