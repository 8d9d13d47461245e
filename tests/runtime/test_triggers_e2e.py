"""`python -m selfhost` on tests/apps/triggers_app against Azurite: queue → blob output → blob
trigger → queue output, across a restart that must not fire anything again."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from tests.support.azurite import Azurite
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.azurite, pytest.mark.runtime]

APP = Path(__file__).resolve().parents[1] / "apps" / "triggers_app"


def done_messages(azurite: Azurite, queue: str) -> list[dict[str, Any]]:
    with QueueClient.from_connection_string(azurite.connection_string, queue) as client:
        try:
            peeked = client.peek_messages(max_messages=32)
        except Exception:  # noqa: BLE001 - the queue does not exist until the first output
            return []
        return [json.loads(base64.b64decode(str(m.content))) for m in peeked]


def send_task(azurite: Azurite, queue: str, name: str, text: str) -> None:
    with QueueClient.from_connection_string(azurite.connection_string, queue) as client:
        body = json.dumps({"name": name, "text": text}).encode()
        client.send_message(base64.b64encode(body).decode())


def test_queue_blob_chain_survives_a_restart_without_refiring(azurite: Azurite, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    tasks, container, done = f"tasks-{suffix}", f"results-{suffix}", f"done-{suffix}"
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "AzureFunctionsWebHost__hostid": f"e2e-{suffix}",
        "TASKS_QUEUE": tasks,
        "OUT_CONTAINER": container,
        "DONE_QUEUE": done,
    }
    with QueueClient.from_connection_string(azurite.connection_string, tasks) as client:
        client.create_queue()
    runtime = RuntimeProcess(APP, tmp_path / "state", env=env)
    try:
        runtime.start()
        send_task(azurite, tasks, "a", "hello")
        first = wait_until(
            lambda: done_messages(azurite, done),
            timeout=30,
            message=f"no output from the chain\n{runtime.log_text()[-3000:]}",
        )
        assert first == [{"name": f"{container}/a.txt", "body": "HELLO"}]

        runtime.stop()
        runtime.start()
        send_task(azurite, tasks, "b", "again")
        wait_until(
            lambda: len(done_messages(azurite, done)) >= 2,
            timeout=30,
            message=f"no output after restart\n{runtime.log_text()[-3000:]}",
        )
        time.sleep(3)  # several blob scans and queue polls after the restart
        names = sorted(m["name"] for m in done_messages(azurite, done))
        assert names == [f"{container}/a.txt", f"{container}/b.txt"], runtime.log_text()[-3000:]
    finally:
        runtime.stop()
