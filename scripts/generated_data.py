"""Play an imaging app beside `make run`: write generated data, then say the session completed.

    .venv/bin/python -m scripts.generated_data upload recon S-001 scan-1.dcm scan-2.dcm [--content-type T]
    .venv/bin/python -m scripts.generated_data complete recon S-001 --study ST-9 [--items a.dcm b.dcm]

`upload` writes each file to `{app}/{session}/{file name}` in the generated-data container
(GENERATED_DATA_CONTAINER, default `generated-data`); `complete` puts a session-completed message
on the `session-completed` queue (base64, as the Functions host reads it). The storage is
`AzureWebJobsStorage` from the environment, else local Azurite (`UseDevelopmentStorage=true`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient, ContentSettings
from azure.storage.queue import QueueClient

QUEUE = "session-completed"


def _connection() -> str:
    return os.environ.get("AzureWebJobsStorage") or "UseDevelopmentStorage=true"  # noqa: SIM112 - the host's name


def upload(app: str, session: str, files: Sequence[Path], content_type: str | None) -> None:
    container = os.environ.get("GENERATED_DATA_CONTAINER") or "generated-data"
    with ContainerClient.from_connection_string(_connection(), container) as c:
        with contextlib.suppress(ResourceExistsError):
            c.create_container()
        for path in files:
            name = f"{app}/{session}/{path.name}"
            settings = ContentSettings(content_type=content_type) if content_type else None
            with path.open("rb") as data:
                c.upload_blob(name, data, overwrite=True, content_settings=settings)
            print(f"uploaded {container}/{name} ({path.stat().st_size} bytes)")


def complete(app: str, session: str, study: str | None, items: Sequence[str] | None) -> None:
    message: dict[str, object] = {"session_id": session, "app": app, "prefix": f"{app}/{session}/"}
    if study:
        message["study_id"] = study
    if items:
        message["items"] = list(items)
    with QueueClient.from_connection_string(_connection(), QUEUE) as q:
        with contextlib.suppress(ResourceExistsError):
            q.create_queue()
        q.send_message(base64.b64encode(json.dumps(message).encode()).decode())
    print(f"sent to {QUEUE}: {json.dumps(message)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload", help="write files as an app's generated data of a session")
    up.add_argument("app")
    up.add_argument("session")
    up.add_argument("files", nargs="+", type=Path)
    up.add_argument("--content-type")
    done = sub.add_parser("complete", help="send the session-completed message")
    done.add_argument("app")
    done.add_argument("session")
    done.add_argument("--study")
    done.add_argument("--items", nargs="+", help="export only these paths below the session's folder")
    args = parser.parse_args(argv)
    if args.command == "upload":
        missing = [str(f) for f in args.files if not f.is_file()]
        if missing:
            print(f"no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
        upload(args.app, args.session, args.files, args.content_type)
    else:
        complete(args.app, args.session, args.study, args.items)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
