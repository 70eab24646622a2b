"""The `orchestrator` command: the embedded stack, a worker, and the API from
the shell.

Every command that reads the API prints a readable table and takes `--json`
for scripts (the API's JSON, unchanged, on stdout). A user mistake (bad JSON,
an unknown id, the API unreachable, a missing setting, a wrong option) prints
one `error:` line on stderr and exits non-zero; never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from .. import resources as r
from ..settings import ConfigError
from . import bulk as cli_bulk
from . import control as cli_control
from . import local as cli_local
from . import runs as cli_runs
from .common import JsonFlag, _call, _client, _fail, _options, _print_json
from .format import out
from .versions import register as register_versions

app = typer.Typer(
    help="Durable workflows on DynamoDB, SQS and EventBridge Scheduler.\n\n"
    "Start with `orchestrator dev` (the embedded stack; it prints the exports and the "
    "dashboard URL), then `orchestrator worker examples.all` and "
    '`orchestrator start greet --input \'{"name": "World"}\'`.',
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            envvar=r.ENV_API_URL,
            show_envvar=True,
            help="The API's URL (printed by `orchestrator dev`; the stack's ApiUrl output).",
        ),
    ] = None,
) -> None:
    _options["api_url"] = api_url


# The commands live in one module per concern; registered here in the order
# `--help` lists them.
app.command()(cli_runs.start)
app.command("list")(cli_runs.list_runs)
app.command()(cli_runs.show)
app.command()(cli_runs.steps)
app.command()(cli_control.signal)
app.command()(cli_control.terminate)
app.command()(cli_runs.export)
app.command()(cli_bulk.bulk)
app.command()(cli_runs.inbox)
app.command()(cli_control.cancel)
app.add_typer(cli_control.callback_app, name="callback")
app.command()(cli_local.dashboard)
app.command()(cli_local.workers)
app.command()(cli_local.worker)
app.command()(cli_local.dev)
app.command()(cli_local.demo)


def _add_subcommands() -> None:
    from .jobs import jobs_app
    from .schedules import queue_app, schedule_app

    app.add_typer(jobs_app, name="jobs")
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(queue_app, name="queue")


@app.command()
def queues(as_json: JsonFlag = False) -> None:
    """List task queues: depth, runs in flight, flow-control limits.

    Examples:

      orchestrator queues

      orchestrator queue set gpu --max-concurrency 4
    """
    from .schedules import queues_table

    found = _call(_client().queues)
    if as_json:
        _print_json(found)
    else:
        out.print(queues_table(found))


_add_subcommands()


# Click's usage errors (a missing argument, an unknown option or command): the
# base class of typer.BadParameter, found this way because typer 0.29 vendors
# click while earlier versions use click itself.
_USAGE_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


register_versions(app)  # replay-check, redrive, fork (orchestrator/cli/versions.py)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Usage mistakes print one line with a pointer to
    --help (not click's box), and Ctrl-C exits 130 quietly."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="orchestrator", standalone_mode=False)
    except _USAGE_ERROR as e:
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "orchestrator"
        message = e.format_message()  # type: ignore[attr-defined]
        if message:  # empty when click already printed the help (no arguments at all)
            _fail(f"{message} (see: {where} --help)")
        return int(getattr(e, "exit_code", 2))
    except typer.Abort:
        return 130
    except ConfigError as e:
        _fail(str(e), code=2)
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
