"""The `bulk-export` commands: submit (`cli.submit`), status, watch, list, cancel, retry, validate.

Each command is a few lines: build the request (`bodies`), make one call (`api`), present the
answer (`render`, `watch`) or print the API's JSON (`--json`). `main` is the console script.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli import render
from cli.app import JobId, JsonOut, Runtime, WatchAfter, app, console, print_json, state_of
from cli.bodies import load_json, parse_labels
from cli.codes import TERMINAL_STATES, ExitCode
from cli.config import REQUESTED_BY_ENV
from cli.errors import ConfigError
from cli.submit import submit_app
from cli.watch import watch_job

__all__ = ["Runtime", "app", "main"]

app.add_typer(submit_app, name="submit")


@app.command()
def status(ctx: typer.Context, job_id: JobId, json_out: JsonOut = False) -> None:
    """Show a job of any kind (GET /api/jobs/{id}): its state, its types or items, its errors."""
    doc = state_of(ctx).client().job(job_id)
    if json_out:
        print_json(doc)
    else:
        render.print_status(console(), doc)


@app.command()
def watch(
    ctx: typer.Context,
    job_id: JobId,
    interval: Annotated[float, typer.Option(min=0.2, help="seconds between two looks at the job")] = 1.0,
    timeout: Annotated[float | None, typer.Option(help="give up after this many seconds (exit 4)")] = None,
    patience: Annotated[
        float, typer.Option(help="seconds to ride out a service that does not answer")
    ] = 60.0,
    json_out: Annotated[bool, typer.Option("--json", help="no bars; print the last status JSON")] = False,
) -> None:
    """Live progress bars until the job ends. Exit code: 0 succeeded, 1 failed, 2 cancelled."""
    state = state_of(ctx)
    code = watch_job(
        state.client(),
        job_id,
        console(),
        clock=state.runtime.clock,
        interval=interval,
        timeout=timeout,
        patience=patience,
        json_out=json_out,
    )
    raise typer.Exit(code)


class Kind(StrEnum):
    export = "fhir-export"
    batch = "batch"
    session = "session"


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    kind: Annotated[Kind | None, typer.Option(help="only jobs of this kind")] = None,
    state: Annotated[JobState | None, typer.Option(help="only jobs in this state")] = None,
    mine: Annotated[bool, typer.Option("--mine", help=f"only jobs requested by ${REQUESTED_BY_ENV}")] = False,
    requested_by: Annotated[str | None, typer.Option(help="only jobs requested by this address")] = None,
    label: Annotated[str | None, typer.Option(help="only jobs with this label (key=value)")] = None,
    created_from: Annotated[
        str | None, typer.Option("--from", help="created on or after (date or ISO instant)")
    ] = None,
    created_to: Annotated[
        str | None, typer.Option("--to", help="created on or before (date or ISO instant)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="jobs in one page")] = 50,
    continuation: Annotated[
        str | None, typer.Option(help="the next page, as a previous list gave it")
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """List jobs of every kind, newest first (GET /api/jobs)."""
    if mine:
        me = os.environ.get(REQUESTED_BY_ENV)
        if not me:
            raise ConfigError(f"--mine needs ${REQUESTED_BY_ENV} (your e-mail address)")
        if requested_by and requested_by != me:
            raise ConfigError("--mine and --requested-by name different people")
        requested_by = me
    if label is not None:
        parse_labels([label])  # key=value, or a clear error before any call
    params = {
        "kind": kind.value if kind else "",
        "state": state.value if state else "",
        "requested_by": requested_by or "",
        "label": label or "",
        "created_from": created_from or "",
        "created_to": created_to or "",
        "limit": str(limit),
        "continuation": continuation or "",
    }
    listing = state_of(ctx).client().jobs(params)
    if json_out:
        print_json(listing)
    else:
        render.print_jobs(console(), listing)


@app.command()
def cancel(ctx: typer.Context, job_id: JobId, json_out: JsonOut = False) -> None:
    """Cancel a job that has not ended (DELETE /api/jobs/{id}); its files and secrets are deleted."""
    doc = state_of(ctx).client().cancel(job_id)
    if json_out:
        print_json(doc)
        return
    out = console()
    if (
        doc.get("state") in TERMINAL_STATES
        and doc.get("state") != "cancelled"
        and not doc.get("cancel_requested")
    ):
        out.print(f"{doc.get('kind')} {job_id} had already ended: {doc.get('state')}")
    else:
        out.print(f"cancel requested: {render.summary_line(doc)}")
        out.print(f"  follow it: bulk-export watch {job_id}")


@app.command()
def retry(
    ctx: typer.Context,
    job_id: JobId,
    secret_file: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help='a JSON file with the job\'s secrets again, e.g. {"source": {"auth_secret": "..."}} '
            '(an export) or {"destination": {"secret": "..."}} (a batch); - reads stdin',
        ),
    ] = None,
    watch: WatchAfter = False,
    json_out: JsonOut = False,
) -> None:
    """Queue a failed job again (POST /api/jobs/{id}/retry): only what did not succeed runs again."""
    body = load_json(secret_file, "secret") if secret_file else None
    state = state_of(ctx)
    doc = state.client().retry(job_id, body)
    if watch:
        raise typer.Exit(
            watch_job(state.client(), job_id, console(), clock=state.runtime.clock, json_out=json_out)
        )
    if json_out:
        print_json(doc)
    else:
        out = console()
        out.print(f"queued again: {render.summary_line(doc)}")
        out.print(f"  follow it: bulk-export watch {job_id}")


def _validator() -> Callable[[Sequence[str]], int]:
    """`shared.validation.main` of the checkout this package is installed from (editable: the
    console script does not have the checkout on its path, as `python -m` in it would)."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "shared" / "validation.py").is_file() and str(checkout) not in sys.path:
        sys.path.append(str(checkout))
    try:
        from shared.validation import main as run_validator
    except ImportError as exc:
        raise ConfigError(
            f"validate needs the checkout's data validator (shared.validation): {exc}"
        ) from None
    return run_validator


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def validate(ctx: typer.Context) -> None:
    """Check an export's files against its source: the data validator (python -m shared.validation).

    Its options are the validator's (bulk-export validate --help); it reads the FHIR server and
    the storage itself (AZURE_STORAGE_CONNECTION_STRING), not the service. Exit code: 0 valid,
    1 invalid, 3 could not validate."""
    run_validator = _validator()
    errors = io.StringIO()  # argparse writes its usage and the error; only the error is shown
    try:
        with contextlib.redirect_stderr(errors):
            code = run_validator(ctx.args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        if exc.code in (0, None):
            raise typer.Exit(0) from None
        last = (errors.getvalue().strip().splitlines() or ["bad arguments"])[-1]
        raise ConfigError(
            f"validate: {last.split(': error: ', 1)[-1]} (see bulk-export validate --help)"
        ) from None
    typer.echo(errors.getvalue(), err=True, nl=False)  # "could not validate: ...", one line
    raise typer.Exit(ExitCode.ERROR if code == 2 else code)


def main() -> None:
    """The console script `bulk-export`."""
    app()
