"""Run commands: `start`, `list`, `show` (and `--follow`), `steps`, `export`,
`inbox`. Registered on the main app by `orchestrator/cli/__init__.py`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from .common import (
    FLAG,
    STATUSES,
    JsonFlag,
    RunId,
    _call,
    _client,
    _fail,
    _json_arg,
    _print_json,
    err,
)
from .format import (
    TERMINAL,
    _inbox_table,
    _outcome,
    _print_run,
    _runs_table,
    _status,
    _steps_table,
    _unavailable,
    out,
)


def start(
    name: Annotated[str, typer.Argument(help="Workflow name, e.g. greet.", show_default=False)],
    input: Annotated[
        str | None,
        typer.Option("--input", "-i", help="JSON input, or @FILE to read it from a file."),
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", help="Run id: starting the same id again is a no-op.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Execution timeout in seconds: the run fails after it."),
    ] = None,
    task_queue: Annotated[
        str | None,
        typer.Option("--task-queue", help="The task queue whose workers run it (default)."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Wait until the run ends; exit 1 unless it completed.", metavar=FLAG
        ),
    ] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="A custom field key=value to list the run by (repeatable)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start a run.

    Examples:

      orchestrator start greet --input '{"name": "World"}'

      orchestrator start approval --input @approval.json --id approval-ada --wait

      orchestrator start order --input @order.json --tag customer=42
    """
    value = _json_arg(input, "--input")
    client = _client()
    kwargs: dict[str, Any] = {"id": id}
    if tag:
        pairs = [t.partition("=") for t in tag]
        if any(not sep for _, sep, _ in pairs):
            raise _fail("--tag is key=value")
        kwargs["tags"] = {k: v for k, _, v in pairs}
    if timeout is not None:
        kwargs["execution_timeout"] = timeout
    if task_queue is not None:
        kwargs["task_queue"] = task_queue
    run = _call(client.start, name, value, **kwargs)
    if wait:
        with err.status(f"waiting for {run['id']} to end…"):
            run = _call(client.wait, run["id"], timeout=24 * 3600)
    if as_json:
        _print_json(run)
    elif wait:
        _print_run(run)
    else:
        out.print(
            Text.assemble(
                "started ", (run["name"], "bold"), f" {run['id']} (", _status(run["status"]), ")"
            )
        )
        out.print(f"follow it: orchestrator show {run['id']} --follow", style="dim")
    if wait and run["status"] != "completed":
        raise typer.Exit(1)


def list_runs(
    status: Annotated[
        str | None, typer.Option(help=f"Only runs in this status: {', '.join(STATUSES)}.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    build_id: Annotated[
        str | None, typer.Option(help="Only runs first claimed by workers of this build.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Runs per page (1-200).")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Start after this page: a previous page's next cursor.")
    ] = None,
    tag: Annotated[
        str | None, typer.Option(help="Only runs started with this tag key=value (alone).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first, a page at a time.

    Examples:

      orchestrator list

      orchestrator list --status failed --name approval

      orchestrator list --json | jq -r '.workflows[].id'

      orchestrator list --tag customer=42
    """
    kwargs = {"build_id": build_id} if build_id else {}
    page = _call(
        _client().list, status=status, name=name, limit=limit, cursor=cursor, tag=tag, **kwargs
    )
    if as_json:
        _print_json(page)
        return
    if not page["workflows"]:
        out.print("no runs" + (" match" if status or name else ""))
    else:
        # Piped: no terminal width to fit, so nothing is cut (a console assumes 80).
        out.print(_runs_table(page["workflows"]), width=None if out.is_terminal else 10_000)
    if page.get("next_cursor"):
        out.print(
            f"older runs: orchestrator list --cursor {page['next_cursor']}",
            style="dim",
            soft_wrap=True,
        )


def show(
    workflow_id: RunId,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Tail the run until it ends; exit 1 unless it completed.",
            metavar=FLAG,
        ),
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 0.5,
    as_json: JsonFlag = False,
) -> None:
    """Show a run: status, input, output or error, and its steps.

    Examples:

      orchestrator show 3f2a9c1e-...

      orchestrator show approval-ada --follow

      orchestrator show approval-ada --json | jq .workflow.status
    """
    client = _client()
    if follow:
        raise typer.Exit(_follow(client, workflow_id, interval, as_json))
    run = _call(client.get, workflow_id)
    steps = _call(client.steps, workflow_id)
    if as_json:
        _print_json({"workflow": run, "steps": steps})
        return
    _print_run(run, steps=steps)
    if steps:
        out.print()
        out.print(_steps_table(steps, run))
    lost = [s["name"] for s in steps if _unavailable(s, "result")]
    if lost:
        out.print(
            Text(
                f"value unavailable: the recorded result of {', '.join(map(repr, lost))} is "
                "no longer stored (its S3 object is gone)",
                style="yellow",
            ),
            soft_wrap=True,
        )
    buffered = _call(client.inbox, workflow_id)
    if buffered:
        out.print()
        out.print(f"inbox: {len(buffered)} buffered signal(s), not yet consumed by a wait")
        out.print(_inbox_table(buffered))


def _follow(client: Any, workflow_id: str, interval: float, as_json: bool) -> int:
    """Print the run, then each step as it is recorded or changes, and each
    status change, until the run ends. Returns the exit code."""
    run = _call(client.get, workflow_id)
    if as_json:
        _print_json({"event": "run", "workflow": run})
    else:
        _print_run(run, traceback=False)
    status = run["status"]
    shown: dict[str, str] = {}
    try:
        with err.status("following… (Ctrl-C to stop)") as spinner:
            while True:
                # The run first, then its steps: every step recorded before the
                # status read is in the steps read after it, so a run that ended
                # between two polls still shows its last steps.
                run = _call(client.get, workflow_id)
                steps = _call(client.steps, workflow_id)
                for s in steps:
                    snapshot = json.dumps(s, sort_keys=True)
                    if shown.get(s["id"]) == snapshot:
                        continue
                    shown[s["id"]] = snapshot
                    if as_json:
                        _print_json({"event": "step", "step": s})
                    else:
                        line = f"  #{s['id']} {s['kind']} {s['name']}: {_outcome(s)}"
                        out.print(Text(line, style="red" if s.get("error") else ""), soft_wrap=True)
                if run["status"] != status:
                    if as_json:
                        _print_json({"event": "status", "workflow": run})
                    else:
                        out.print(Text.assemble(f"  {status} → ", _status(run["status"])))
                    status = run["status"]
                if status in TERMINAL:
                    break
                spinner.update(f"{status}… (Ctrl-C to stop)")
                time.sleep(interval)
    except KeyboardInterrupt:
        return 130
    if not as_json:
        if run["status"] == "completed":
            out.print(f"output: {json.dumps(run['output'])}", soft_wrap=True)
        elif run.get("error"):
            error = run["error"]
            out.print(
                Text(f"error:  {error['type']}: {error['message']}", style="red"), soft_wrap=True
            )
    return 0 if run["status"] == "completed" else 1


def steps(
    workflow_id: RunId,
    as_json: JsonFlag = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Expand batches of more than 10 branches.")
    ] = False,
) -> None:
    """List a run's durable operations by id, nested: steps, sleeps, signal waits,
    child contexts and batches (a batch of many branches shows its counts and
    its failed branches first; --all shows everything).

    Examples:

      orchestrator steps approval-ada

      orchestrator steps approval-ada --json
    """
    found = _call(_client().steps, workflow_id)
    if as_json:
        _print_json(found)
    elif not found:
        out.print("no steps recorded yet")
    else:
        out.print(_steps_table(found, _call(_client().get, workflow_id), expand=show_all))


def export(
    workflow_id: RunId,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Export a run's full history as JSON: the run, its steps, every signal.

    Examples:

      orchestrator export order-42 -o order-42.json
    """
    text = json.dumps(_call(_client().history, workflow_id), indent=2)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n")
        err.print(f"wrote {output}")


def inbox(workflow_id: RunId, as_json: JsonFlag = False) -> None:
    """List a run's buffered signals: sent, not yet consumed by a wait.

    Examples:

      orchestrator inbox approval-ada
    """
    found = _call(_client().inbox, workflow_id)
    if as_json:
        _print_json(found)
    elif not found:
        out.print("no buffered signals")
    else:
        out.print(_inbox_table(found))
