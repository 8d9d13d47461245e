"""`bulk-export submit export|batch`: a new job from a JSON file (as the API takes it) or from flags."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer

from cli import render
from cli.api import JobKindPath
from cli.app import (
    CONTEXT,
    JsonOut,
    Labels,
    RequestedBy,
    WatchAfter,
    console,
    help_if_bare,
    print_json,
    state_of,
)
from cli.bodies import (
    BatchFlags,
    ExportFlags,
    batch_body,
    export_body,
    load_json,
    parse_labels,
    with_overrides,
)
from cli.config import REQUESTED_BY_ENV
from cli.errors import ConfigError
from cli.watch import watch_job

__all__ = ["submit_app"]

submit_app = typer.Typer(
    help="Submit an export or a batch, from a JSON file or from flags.", context_settings=CONTEXT
)


@submit_app.callback(invoke_without_command=True)
def submit(ctx: typer.Context) -> None:
    help_if_bare(ctx)


BodyFile = Annotated[
    str | None,
    typer.Argument(
        metavar="FILE.json",
        show_default=False,
        help="the request body, as the API takes it (- reads standard input)",
    ),
]


def _submit(
    ctx: typer.Context, kind: JobKindPath, body: Mapping[str, Any], watch: bool, json_out: bool
) -> None:
    state = state_of(ctx)
    answer = state.client().submit(kind, body)
    if watch:
        code = watch_job(
            state.client(), str(answer["id"]), console(), clock=state.runtime.clock, json_out=json_out
        )
        raise typer.Exit(code)
    if json_out:
        print_json(answer)
    else:
        render.print_submitted(console(), "export" if kind == "exports" else "batch", answer)


def _me() -> str | None:
    return os.environ.get(REQUESTED_BY_ENV) or None


def _file_body(
    file: str, flags_given: bool, requested_by: str | None, labels: Sequence[str]
) -> dict[str, Any]:
    """The file's body; --requested-by and --label override it, $BULK_EXPORT_REQUESTED_BY only
    fills a missing requester."""
    if flags_given:
        raise ConfigError(
            "give FILE.json or the flags that make a body, not both "
            "(--requested-by and --label may go with a file)"
        )
    body = with_overrides(load_json(file), requested_by, parse_labels(labels))
    if not body.get("requested_by") and _me():
        body["requested_by"] = _me()
    return body


@submit_app.command("export")
def submit_export(
    ctx: typer.Context,
    file: BodyFile = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="a FHIR resource type (repeatable)")
    ] = None,
    fhir_url: Annotated[str | None, typer.Option(help="the FHIR server; default: the service's")] = None,
    since: Annotated[str | None, typer.Option(help="only resources changed after this instant")] = None,
    container: Annotated[str | None, typer.Option(help="the Blob container; default: the service's")] = None,
    prefix: Annotated[str | None, typer.Option(help="the path prefix of the files in the container")] = None,
    requested_by: RequestedBy = None,
    label: Labels = None,
    watch: WatchAfter = False,
    json_out: JsonOut = False,
) -> None:
    """Start a FHIR export (POST /api/exports): from FILE.json, or --type ... for a quick one."""
    labels = label or []
    flags = ExportFlags(
        types=types or (),
        base_url=fhir_url,
        since=since,
        container=container,
        prefix=prefix,
        requested_by=requested_by or _me(),
        labels=parse_labels(labels),
    )
    body = _file_body(file, flags.given(), requested_by, labels) if file else export_body(flags)
    _submit(ctx, "exports", body, watch, json_out)


class SourceKind(StrEnum):
    blob = "blob"
    url = "url"
    local = "local"


@submit_app.command("batch")
def submit_batch(
    ctx: typer.Context,
    file: BodyFile = None,
    item: Annotated[
        list[str] | None, typer.Option(help="a file to send: blob name, URL or path (repeatable)")
    ] = None,
    container: Annotated[str | None, typer.Option(help="the source container of blob items")] = None,
    source: Annotated[SourceKind, typer.Option(help="where the items are")] = SourceKind.blob,
    put_url: Annotated[
        str | None, typer.Option(help="destination: an HTTP PUT (WebDAV) server's base URL")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="the PUT URL of each item; default {base}/{path}")
    ] = None,
    create_parents: Annotated[bool, typer.Option(help="MKCOL missing folders (WebDAV)")] = True,
    dest_container: Annotated[str | None, typer.Option(help="destination: a Blob container")] = None,
    dest_prefix: Annotated[str | None, typer.Option(help="the path prefix in --dest-container")] = None,
    concurrency: Annotated[int | None, typer.Option(help="files sent at once (service default 4)")] = None,
    requested_by: RequestedBy = None,
    label: Labels = None,
    watch: WatchAfter = False,
    json_out: JsonOut = False,
) -> None:
    """Send files as one batch (POST /api/batches): from FILE.json, or --item ... for a quick one.

    A body with secrets (a source or destination credential) belongs in a file."""
    labels = label or []
    flags = BatchFlags(
        items=item or (),
        container=container,
        source_kind=source.value,
        put_url=put_url,
        template=template,
        create_parents=create_parents,
        dest_container=dest_container,
        dest_prefix=dest_prefix,
        concurrency=concurrency,
        requested_by=requested_by or _me(),
        labels=parse_labels(labels),
    )
    body = _file_body(file, flags.given(), requested_by, labels) if file else batch_body(flags)
    _submit(ctx, "batches", body, watch, json_out)
