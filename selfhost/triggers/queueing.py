"""Queue settings, names and message encoding shared by the queue trigger, blob trigger and output.

Pure functions: `queue_settings` validates host.json `extensions.queues` (host facts §3.1) and
fills in the derived newBatchThreshold; names follow the storage rules and the SDK's poison
naming; message bodies are base64 (the default) or plain text per `messageEncoding`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from selfhost.config import ConfigError, QueuesConfig

__all__ = [
    "InvalidMessageEncoding",
    "QueueSettings",
    "decode_message",
    "encode_message",
    "poison_queue_name",
    "queue_settings",
    "validate_queue_name",
]

_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


class InvalidMessageEncoding(ValueError):
    """A message body is not valid base64 although messageEncoding is base64."""


@dataclass(frozen=True)
class QueueSettings:
    batch_size: int
    new_batch_threshold: int
    max_polling_interval_s: float
    visibility_timeout_s: float
    max_dequeue_count: int
    message_encoding: str


def queue_settings(config: QueuesConfig, cpu_count: int | None = None) -> QueueSettings:
    """Validate `extensions.queues` and fill in the derived newBatchThreshold default."""
    if not 1 <= config.batch_size <= 32:
        raise ConfigError(f"host.json: extensions.queues.batchSize must be 1-32, got {config.batch_size}")
    if config.max_polling_interval_s < 0.1:
        raise ConfigError("host.json: extensions.queues.maxPollingInterval must be at least 100 ms")
    if config.max_dequeue_count < 1:
        raise ConfigError("host.json: extensions.queues.maxDequeueCount must be at least 1")
    if config.message_encoding not in ("base64", "none"):
        raise ConfigError(
            f"host.json: extensions.queues.messageEncoding must be base64 or none, got {config.message_encoding!r}"
        )
    threshold = config.new_batch_threshold
    if threshold is None:
        # SDK default: (batchSize / 2) * processors (integer division), not a fixed 8.
        threshold = (config.batch_size // 2) * (cpu_count or os.cpu_count() or 1)
    return QueueSettings(
        batch_size=config.batch_size,
        new_batch_threshold=max(0, threshold),
        max_polling_interval_s=config.max_polling_interval_s,
        visibility_timeout_s=max(0.0, config.visibility_timeout_s),
        max_dequeue_count=config.max_dequeue_count,
        message_encoding=config.message_encoding,
    )


def validate_queue_name(name: str) -> str:
    """Lower-case and check a queue name as the SDK does (3-63 chars, a-z 0-9 and single '-')."""
    normalized = name.strip().lower()
    if not _QUEUE_NAME.match(normalized):
        raise ConfigError(
            f"invalid queue name {name!r}: use 3-63 lower-case letters, digits and single hyphens"
        )
    return normalized


def poison_queue_name(queue_name: str) -> str | None:
    """`<queue>-poison`, or None when the queue is itself a poison queue or the name is too long."""
    if queue_name.endswith("-poison") or len(queue_name) + len("-poison") > 63:
        return None
    return queue_name + "-poison"


def decode_message(text: str, encoding: str) -> bytes:
    if encoding == "none":
        return text.encode("utf-8")
    try:
        # .NET's Convert.FromBase64String ignores whitespace; Python's strict mode does not.
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMessageEncoding(f"message is not valid base64: {exc}") from exc


def encode_message(body: bytes, encoding: str) -> str:
    if encoding == "none":
        return body.decode("utf-8")
    return base64.b64encode(body).decode("ascii")
