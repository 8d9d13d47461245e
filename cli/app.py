"""The typer application the commands hang on: its root options, its state, its error handling.

Every error ends as one line on stderr, `error: ...`, with exit code 3 (`codes` lists them all);
click's usage errors too. The root callback turns `--url`, `--key` and `--timeout` into a `State`
whose API client is made when a command first needs one. Tests run the commands with
`typer.testing.CliRunner` and give a `Runtime` (a fake transport, a clock) as `obj`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from typer.core import TyperGroup

from cli.api import ApiClient
from cli.codes import ExitCode
from cli.config import KEY_ENV, REQUESTED_BY_ENV, URL_ENV, resolve_target
from cli.errors import CliError
from cli.watch import Clock

__all__ = ["CONTEXT", "Runtime", "State", "app", "help_if_bare", "print_json", "state_of"]


def _fail(line: str) -> int:
    typer.echo(f"error: {' '.join(line.split())}", err=True)
    return int(ExitCode.ERROR)


class _OneLineErrors(TyperGroup):
    """Runs the app with click's error handling off, so that every error is one line, exit 3."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        standalone = kwargs.pop("standalone_mode", True)
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except CliError as exc:
            code = _fail(str(exc))
        except typer.TyperException as exc:  # click's usage errors: bad option, missing argument, ...
            context = getattr(exc, "ctx", None)
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            code = _fail(exc.format_message() + hint)
        except typer.Abort:
            code = 130
        code = code if isinstance(code, int) else 0
        if standalone:
            sys.exit(code)
        return code


# Typer keeps the line breaks of a help text: one paragraph per line.
HELP = "\n\n".join(
    [
        "Submit and follow bulk exports and batches through the service's HTTP API.",
        f"The service is --url (or ${URL_ENV}; default http://127.0.0.1:7071, the runtime of make run) "
        f"and the function key is --key (or ${KEY_ENV}, better: a command line is visible to other "
        "users). Without a key, a local URL uses the default function key in the local runtime's "
        ".state/runtime/keys.json (under the current folder, else under this checkout). The key is "
        "never printed.",
        "Exit codes: 0 done (watch: the job succeeded), 1 the job failed, 2 the job was cancelled, "
        "3 usage or API error (one line on stderr), 4 watch --timeout passed first.",
    ]
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
app = typer.Typer(
    cls=_OneLineErrors,
    name="bulk-export",
    help=HELP,
    add_completion=False,
    context_settings=CONTEXT,
    pretty_exceptions_enable=False,
)


@dataclass
class Runtime:
    """What the commands take from outside; tests pass their own as `CliRunner.invoke(obj=...)`."""

    transport: httpx.BaseTransport | None = None
    clock: Clock = field(default_factory=Clock)
    key_files: Sequence[Path] | None = None  # None: `config.local_key_files()`


@dataclass
class State:
    """One invocation's options; the client is made when a command first needs it."""

    runtime: Runtime
    url: str | None
    key: str | None
    timeout: float
    _client: ApiClient | None = None

    def client(self) -> ApiClient:
        if self._client is None:
            target = resolve_target(self.url, self.key, key_files=self.runtime.key_files)
            self._client = ApiClient(target, transport=self.runtime.transport, timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def state_of(ctx: typer.Context) -> State:
    state = ctx.find_object(State)
    assert state is not None, "the root callback sets the state"
    return state


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def print_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2))


def help_if_bare(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        text = ctx.get_help()  # typer's rich help prints itself and returns ""
        if text:
            typer.echo(text)
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar=URL_ENV,
            show_default=False,
            help="the service's base URL, e.g. https://<app>.azurewebsites.net; default http://127.0.0.1:7071",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            show_default=False,
            help=f"the function key; default ${KEY_ENV}, or for a local URL the local runtime's keys.json",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each answer of the service")] = 30.0,
) -> None:
    runtime = ctx.obj if isinstance(ctx.obj, Runtime) else Runtime()
    state = State(runtime, url, key, timeout)
    ctx.obj = state
    ctx.call_on_close(state.close)
    help_if_bare(ctx)


# -- options shared by several commands ---------------------------------------------------------

JsonOut = Annotated[bool, typer.Option("--json", help="print the API's JSON instead")]
JobId = Annotated[str, typer.Argument(metavar="ID", help="the job's id", show_default=False)]
RequestedBy = Annotated[
    str | None,
    typer.Option(
        "--requested-by",
        show_default=False,
        help=f"the requester's e-mail address (over the file's); default ${REQUESTED_BY_ENV}",
    ),
]
Labels = Annotated[
    list[str] | None, typer.Option("--label", help="key=value (repeatable)", show_default=False)
]
WatchAfter = Annotated[
    bool, typer.Option("--watch", help="then watch it until it ends (exit code by outcome)")
]
