"""Queue settings, names, message encoding, connection resolution and output value shaping."""

from __future__ import annotations

import io
from pathlib import Path

import azure.functions as func
import pytest

from selfhost.config import ConfigError, QueuesConfig
from selfhost.triggers.blob import BlobListener
from selfhost.triggers.connections import StorageConnectionError, resolve_connection
from selfhost.triggers.listeners import LISTENERS
from selfhost.triggers.outputs import blob_payload, queue_payloads
from selfhost.triggers.queue import QueueListener
from selfhost.triggers.queueing import (
    InvalidMessageEncoding,
    decode_message,
    encode_message,
    poison_queue_name,
    queue_settings,
    validate_queue_name,
)
from selfhost.triggers.timer import TimerListener
from tests.support.trigger_fakes import FakeClock, FakeInvoker, function_info, host_config, run_async

pytestmark = pytest.mark.unit


def test_defaults_follow_the_sdk() -> None:
    s = queue_settings(QueuesConfig(), cpu_count=4)
    assert (s.batch_size, s.new_batch_threshold, s.max_dequeue_count, s.message_encoding) == (
        16,
        32,
        5,
        "base64",
    )
    assert queue_settings(QueuesConfig(batch_size=1), cpu_count=4).new_batch_threshold == 0
    assert queue_settings(QueuesConfig(new_batch_threshold=3), cpu_count=4).new_batch_threshold == 3


@pytest.mark.parametrize(
    "config",
    [
        QueuesConfig(batch_size=0),
        QueuesConfig(batch_size=33),
        QueuesConfig(max_polling_interval_s=0.05),
        QueuesConfig(max_dequeue_count=0),
        QueuesConfig(message_encoding="utf8"),
    ],
)
def test_invalid_settings_name_the_key(config: QueuesConfig) -> None:
    with pytest.raises(ConfigError, match="extensions.queues"):
        queue_settings(config)


def test_queue_names() -> None:
    assert validate_queue_name("Orders") == "orders"
    for bad in ("ab", "a--b", "-ab", "ab-", "a_b", "x" * 64):
        with pytest.raises(ConfigError):
            validate_queue_name(bad)
    assert poison_queue_name("orders") == "orders-poison"
    assert poison_queue_name("orders-poison") is None
    assert poison_queue_name("x" * 56) == "x" * 56 + "-poison"
    assert poison_queue_name("x" * 57) is None  # the suffixed name would exceed 63


def test_message_encoding() -> None:
    assert decode_message(encode_message(b"hi \xff", "base64"), "base64") == b"hi \xff"
    assert decode_message("aGk=\n", "base64") == b"hi"  # whitespace is ignored, as in .NET
    assert encode_message(b"plain", "none") == "plain"
    assert decode_message("not base64!", "none") == b"not base64!"
    with pytest.raises(InvalidMessageEncoding):
        decode_message("not base64!", "base64")


ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "MyConn": "AccountName=a;AccountKey=k",
    "AzureWebJobsMyConn": "AccountName=b;AccountKey=k",
    "AzureWebJobsOther": "AccountName=c;AccountKey=k",
    "ConnectionStrings:Cs": "AccountName=d;AccountKey=k",
}


@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("MyConn", "MyConn"),
        ("Other", "AzureWebJobsOther"),
        ("Cs", "ConnectionStrings:Cs"),
        ("", "AzureWebJobsStorage"),
        (None, "AzureWebJobsStorage"),
        ("Storage", "AzureWebJobsStorage"),
    ],
)
def test_connection_resolution_order(name: str | None, setting: str) -> None:
    assert resolve_connection(name, ENV).setting == setting


def test_development_storage_maps_to_azurite_defaults() -> None:
    cs = resolve_connection("", {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).connection_string
    for endpoint in ("http://127.0.0.1:10000/", "http://127.0.0.1:10001/", "http://127.0.0.1:10002/"):
        assert endpoint in cs


def test_unresolvable_connections_say_why() -> None:
    with pytest.raises(StorageConnectionError, match="AzureWebJobsNope"):
        resolve_connection("Nope", {})
    with pytest.raises(StorageConnectionError, match="identity-based"):
        resolve_connection("Id", {"Id__queueServiceUri": "https://a.queue.core.windows.net"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["a","b"]', [b"a", b"b"]),  # the host splits a JSON array
        ('[{"x":1},2]', [b'{"x": 1}', b"2"]),
        ('{"a":1}', [b'{"a":1}']),
        ("plain", [b"plain"]),
        (b"raw", [b"raw"]),
        (["a", "b"], [b"a", b"b"]),
        (None, []),
    ],
)
def test_queue_output_shapes(value: object, expected: list[bytes]) -> None:
    assert queue_payloads(value) == expected


def test_queue_output_message_objects_and_bad_types() -> None:
    assert queue_payloads(func.QueueMessage(id="1", body="x")) == [b'{"id": "1", "body": "x"}']
    assert queue_payloads([func.QueueMessage(body="y")]) == [b'{"id": null, "body": "y"}']
    with pytest.raises(TypeError):
        queue_payloads({"a": 1})
    with pytest.raises(TypeError):
        queue_payloads([1])


def test_blob_output_shapes() -> None:
    assert blob_payload("é") == "é".encode()
    assert blob_payload(b"\x00") == b"\x00"
    assert blob_payload(io.BytesIO(b"abc")) == b"abc"
    assert blob_payload(None) is None
    with pytest.raises(TypeError):
        blob_payload(3)


def test_listener_configuration_errors_surface_at_start(tmp_path: Path) -> None:
    """The host builds every listener first and logs start() failures per function."""
    config = host_config(tmp_path)
    bad_name = function_info("q", {"type": "queueTrigger", "name": "m", "queueName": "Bad_Name"})
    no_conn = function_info(
        "b", {"type": "blobTrigger", "name": "b", "path": "box/{name}", "connection": "Nope"}
    )
    queue_listener = QueueListener(bad_name, FakeInvoker(), config, FakeClock(), environ={})
    blob_listener = BlobListener(no_conn, FakeInvoker(), config, FakeClock(), environ={})
    with pytest.raises(ConfigError, match="Bad_Name"):
        run_async(queue_listener.start())
    with pytest.raises(StorageConnectionError, match="Nope"):
        run_async(blob_listener.start())


def test_registry_names_the_three_listeners() -> None:
    assert {
        "timerTrigger": TimerListener,
        "queueTrigger": QueueListener,
        "blobTrigger": BlobListener,
    } == LISTENERS
