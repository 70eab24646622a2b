"""CLI commands for changing workflows and recovering runs: `replay-check`,
`migrate`, `redrive`, `fork`. Registered on the main app by `orchestrator/cli/__init__.py`."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Annotated, Any

import typer

from ..model import Run


def register(app: typer.Typer) -> None:
    app.command("replay-check")(replay_check)
    app.command("migrate")(migrate)
    app.command("redrive")(redrive)
    app.command("fork")(fork)


def _runs(store: Any, *, name: str | None, limit: int, include_finished: bool) -> list[Run]:
    """Newest first: the in-flight runs (and the finished ones if asked) among the
    first `limit` such runs of the by_created index."""
    out: list[Run] = []
    cursor: str | None = None
    while len(out) < limit:
        page = store.list_runs(name=name, limit=200, cursor=cursor)
        out.extend(r for r in page.runs if include_finished or not r.status.terminal)
        cursor = page.cursor
        if cursor is None:
            break
    return out[:limit]


def replay_check(
    module: Annotated[
        str, typer.Argument(help="Importable module with @workflow functions.", show_default=False)
    ],
    name: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    limit: Annotated[int, typer.Option(help="Check at most this many runs, newest first.")] = 1000,
    include_finished: Annotated[
        bool, typer.Option(help="Also replay completed, failed and cancelled runs.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds one run's replay may take.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay recorded runs against the local code, executing nothing.

    Reads each run's history with one Query (DynamoDB, with the worker's
    environment) and replays it with MODULE's workflows; prints each run that
    would fail with NonDeterminismError and the operation. Exit status 1 if
    any would: a deploy gate. A run whose history cannot be read (a value it
    recorded in S3 is gone) is listed as UNREADABLE and does not fail the gate:
    no build can replay it.

    Examples:

      orchestrator replay-check myapp.workflows

      orchestrator replay-check myapp.workflows --name order --limit 200 --include-finished
    """
    from worker import definition_of
    from worker import replay_check as check

    from .. import aws
    from ..clock import SYSTEM_CLOCK
    from ..payloads import SyncValues
    from ..settings import Settings
    from ..store import Store
    from .common import _fail, err
    from .format import out
    from .local import load_workflows

    if limit < 1:
        raise _fail("--limit must be at least 1")
    definitions = {d.name: d for d in map(definition_of, load_workflows(module))}
    if name is not None and name not in definitions:
        raise _fail(f"{module} defines no workflow {name!r}")
    settings = Settings.from_env()
    ddb = aws.client("dynamodb", settings)
    store = Store(ddb, settings.table, SYSTEM_CLOCK)
    t0 = time.perf_counter()
    runs = [
        r
        for r in _runs(store, name=name, limit=limit, include_finished=include_finished)
        if r.name in definitions
    ]
    listed = time.perf_counter() - t0
    values = SyncValues(aws.client("s3", settings), settings.bucket)
    report = asyncio.run(
        check(definitions, runs, ddb, settings.table, timeout=timeout, values=values)
    )
    n = len(report.verdicts)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "checked": n,
                    "failed": len(report.failed),
                    "unreadable": len(report.unreadable),
                    "queries": report.queries,
                    "read_units": report.read_units,
                    "list_seconds": round(listed, 4),
                    "read_seconds": round(report.read_seconds, 4),
                    "replay_seconds": round(report.replay_seconds, 4),
                    "wall_seconds": round(report.wall_seconds, 4),
                    "runs": [v.__dict__ for v in report.verdicts],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        for v in report.failed:
            where = f" at operation {v.operation}" if v.operation else ""
            out.print(f"FAIL {v.workflow_id} ({v.name}, {v.status}){where}: {v.message}")
        for v in report.unreadable:
            out.print(f"UNREADABLE {v.workflow_id} ({v.name}, {v.status}): {v.message}")
        per_run = f"{1000 * report.wall_seconds / n:.1f} ms" if n else "-"
        unreadable = f", {len(report.unreadable)} unreadable" if report.unreadable else ""
        err.print(
            f"{n - len(report.unreadable)} runs replayed, {len(report.failed)} would fail"
            f"{unreadable}; {report.queries} history "
            f"queries ({report.read_units:g} read units), {per_run} per run "
            f"(replay alone {report.replay_seconds:.2f} s; listing {listed:.2f} s)"
        )
    if report.failed:
        raise typer.Exit(1)


def migrate(
    workflow_id: Annotated[str, typer.Argument(help="The pinned run's id.", metavar="ID")],
    to: Annotated[str, typer.Option("--to", help="The build id to move it to.")],
    module: Annotated[
        str,
        typer.Option(
            "--module", "-m", help="Importable module with the new build's @workflow functions."
        ),
    ],
    timeout: Annotated[float, typer.Option(help="Seconds the replay may take.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Move a pinned run to another build, after a replay check.

    Replays the run's history against MODULE's code first (read-only, as
    `replay-check` does) and refuses (exit 1, nothing written) if the replay
    would fail with NonDeterminismError. Then moves the run to build TO
    (through the API), conditioned on the attempt that was checked, and sends
    its message to that build's queue. Refused while a worker holds the run
    with a live lease.

    Example:

      orchestrator migrate order-17 --to 2026.12.1 --module myapp.workflows
    """
    from worker import definition_of
    from worker import replay_check as check

    from .. import aws
    from ..clock import SYSTEM_CLOCK
    from ..errors import OrchestratorError
    from ..model import BUILD_ID_HELP, BUILD_ID_RE, WORKFLOW_ID_RE
    from ..payloads import SyncValues
    from ..settings import Settings
    from ..store import Store
    from .common import _call, _client, _fail, _print_json, err
    from .format import out
    from .local import load_workflows

    if not WORKFLOW_ID_RE.fullmatch(workflow_id):
        raise _fail(f"{workflow_id!r} is not a valid workflow id")
    if not BUILD_ID_RE.fullmatch(to):
        raise _fail(f"--to {to!r}: {BUILD_ID_HELP}")
    definitions = {d.name: d for d in map(definition_of, load_workflows(module))}
    settings = Settings.from_env()
    ddb = aws.client("dynamodb", settings)
    try:
        run = Store(ddb, settings.table, SYSTEM_CLOCK).get(workflow_id)
    except OrchestratorError as e:
        raise _fail(e.message) from None
    if run.status.terminal:
        raise _fail(f"workflow run {workflow_id!r} is {run.status.value}; it has no build to move")
    if run.name not in definitions:
        raise _fail(
            f"{module} defines no workflow {run.name!r}: nothing to replay {workflow_id!r} with"
        )
    values = SyncValues(aws.client("s3", settings), settings.bucket)
    report = asyncio.run(
        check(definitions, [run], ddb, settings.table, timeout=timeout, values=values)
    )
    verdict = report.verdicts[0]
    if not verdict.ok:
        where = f" at operation {verdict.operation}" if verdict.operation else ""
        raise _fail(
            f"not migrated: {workflow_id} would fail on {module}'s code{where}: {verdict.message}"
        )
    err.print(f"replay check passed for {workflow_id} ({verdict.outcome})")
    reply = _call(_client().migrate, workflow_id, to_build=to, attempt=run.epoch)
    if as_json:
        _print_json(reply)
    else:
        out.print(f"{reply['outcome']}: {reply['id']} is on build {reply['build_id']}")


def redrive(
    workflow_id: Annotated[str, typer.Argument(help="The run's id.", metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Put a failed, timed-out or cancelled run back to pending under the same id.

    Recorded successes replay; failed operations run again. Refused (exit 1)
    for a run that is running or completed.
    """
    from .common import _call, _client, _print_json
    from .format import out

    run = _call(_client().redrive, workflow_id)
    if as_json:
        _print_json(run)
    else:
        out.print(f"redriven {run['id']} (redrive {run.get('redrive_count', 1)}): {run['status']}")


def fork(
    workflow_id: Annotated[str, typer.Argument(help="The run's id.", metavar="ID")],
    from_operation: Annotated[
        str, typer.Option("--from", help="Operation id: records before it are kept.")
    ],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="New input (JSON, or @FILE).")
    ] = None,
    id: Annotated[str | None, typer.Option("--id", help="The new run's id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Start a new run with the records before an operation copied from ID."""
    from .common import _call, _client, _json_arg, _print_json
    from .format import out

    kwargs: dict[str, Any] = {"from_operation": from_operation, "id": id}
    if input is not None:
        kwargs["input"] = _json_arg(input, "--input")
    run = _call(_client().fork, workflow_id, **kwargs)
    if as_json:
        _print_json(run)
    else:
        out.print(f"forked {workflow_id} into {run['id']} ({run['status']})")
