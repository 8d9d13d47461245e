"""The registry the host composition uses: trigger type → listener class, plus the output handlers.

`selfhost.host` builds one listener per enabled function whose trigger type is a key of
`LISTENERS` (`cls(fn, invoker, config, clock)`, then `await start()` / `await stop()`), and gives the invoker
`make_output_handlers(config)` for the `queue` and `blob` output bindings.
"""

from __future__ import annotations

from selfhost.functions import BLOB_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER
from selfhost.triggers.base import TriggerListener
from selfhost.triggers.blob import BlobListener
from selfhost.triggers.outputs import make_output_handlers
from selfhost.triggers.queue import QueueListener
from selfhost.triggers.timer import TimerListener

__all__ = ["LISTENERS", "make_output_handlers"]

LISTENERS: dict[str, type[TriggerListener]] = {
    TIMER_TRIGGER: TimerListener,
    QUEUE_TRIGGER: QueueListener,
    BLOB_TRIGGER: BlobListener,
}
