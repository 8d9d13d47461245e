"""JSON request bodies from untrusted clients: one parser whose only failure is ValueError.

`json.loads` on raw bytes can also raise UnicodeDecodeError for non-UTF-8 bytes (a ValueError,
but easily caught too narrowly as JSONDecodeError) and RecursionError for deeply nested arrays,
which escapes `except ValueError` and became a 500. Callers answer 400 with the message.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_json_body"]


def parse_json_body(raw: bytes) -> Any:
    """The JSON value of `raw`; None for an empty body; ValueError saying why it is not JSON."""
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8-sig")  # .NET readers accept a byte-order mark, so do we
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 text") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the body is JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers over the digit limit
        raise ValueError(f"the body is not valid JSON ({exc})") from None
