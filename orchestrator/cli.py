"""The `orchestrator` command: the embedded stack, a worker, and the API from
the shell. User mistakes print one line and exit non-zero, never a traceback."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .errors import OrchestratorError

app = typer.Typer(
    help="Durable workflows on DynamoDB, SQS and EventBridge Scheduler.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(f"{what} is not valid JSON: {e}") from None


def _client() -> Any:
    from .client import Client

    try:
        return Client()
    except OrchestratorError as e:
        raise _fail(e.message) from None


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except OrchestratorError as e:
        raise _fail(e.message) from None


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value))


# --- the API from the shell ---------------------------------------------------------------
@app.command()
def start(
    name: Annotated[str, typer.Argument(help="workflow name, e.g. greet")],
    input: Annotated[str | None, typer.Option("--input", "-i", help="JSON input")] = None,
    id: Annotated[str | None, typer.Option("--id", help="run id (idempotency key)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the run ends")] = False,
) -> None:
    """Start a run.  Example: orchestrator start greet --input '{"name": "World"}'"""
    client = _client()
    run = _call(client.start, name, _json_arg(input, "--input"), id=id)
    if wait:
        run = _call(client.wait, run["id"], timeout=3600)
    _print_json(run)


@app.command("list")
def list_runs(
    status: Annotated[str | None, typer.Option(help="pending, running, sleeping, waiting, completed, failed, cancelled")] = None,
    name: Annotated[str | None, typer.Option(help="workflow name")] = None,
    limit: Annotated[int, typer.Option(help="runs per page (1-200)")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List runs, newest first.  Example: orchestrator list --status failed"""
    page = _call(_client().list, status=status, name=name, limit=limit, cursor=cursor)
    if as_json:
        _print_json(page)
        return
    table = Table("id", "name", "status", "created", "updated")
    for r in page["workflows"]:
        table.add_row(r["id"], r["name"], r["status"], r["created_at"], r["updated_at"])
    out.print(table)
    if page.get("next_cursor"):
        out.print(f"more: --cursor {page['next_cursor']}")


@app.command()
def show(
    workflow_id: Annotated[str, typer.Argument(help="run id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show a run and its steps.  Example: orchestrator show 3f2a..."""
    client = _client()
    run = _call(client.get, workflow_id)
    steps = _call(client.steps, workflow_id)
    if as_json:
        _print_json({"workflow": run, "steps": steps})
        return
    out.print(f"[bold]{run['id']}[/bold]  {run['name']}  [bold]{run['status']}[/bold]")
    out.print(f"input:  {json.dumps(run['input'])}")
    if run["output"] is not None:
        out.print(f"output: {json.dumps(run['output'])}")
    if run["error"]:
        out.print(f"[red]error:[/red]  {run['error']['type']}: {run['error']['message']}")
    table = Table("#", "kind", "name", "outcome")
    for s in steps:
        if s["kind"] == "step":
            outcome = f"error {s['error']['type']}: {s['error']['message']}" if s.get("error") else json.dumps(s.get("result"))
        elif s["kind"] == "sleep":
            outcome = f"wake at {s['wake_at']}"
        else:
            outcome = "timed out" if s.get("timed_out") else (json.dumps(s.get("payload")) if s.get("resolved") else f"waiting for {s['signal']!r}")
        table.add_row(str(s["position"]), s["kind"], s["name"], outcome[:120])
    out.print(table)


@app.command()
def signal(
    workflow_id: Annotated[str, typer.Argument(help="run id")],
    name: Annotated[str, typer.Argument(help="signal name")],
    payload: Annotated[str | None, typer.Option("--payload", "-p", help="JSON payload")] = None,
) -> None:
    """Send a signal.  Example: orchestrator signal ID approved --payload '{"approved": true}'"""
    _print_json(_call(_client().signal, workflow_id, name, _json_arg(payload, "--payload")))


# --- running things -------------------------------------------------------------------------
def load_workflows(module_name: str) -> list[Any]:
    """The workflows a module defines: its WORKFLOWS list, else every @workflow function."""
    from worker._registry import _ATTR

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise _fail(f"cannot import {module_name!r}: {e}") from None
    found = getattr(module, "WORKFLOWS", None)
    if found is None:
        found = [v for v in vars(module).values() if hasattr(v, _ATTR)]
    if not found:
        raise _fail(f"module {module_name!r} defines no @workflow functions")
    return list(found)


@app.command()
def worker(
    module: Annotated[str, typer.Argument(help="importable module with @workflow functions")],
    concurrency: Annotated[int, typer.Option(help="max runs in flight")] = 10,
    grace: Annotated[float, typer.Option(help="seconds running runs get at shutdown")] = 10.0,
) -> None:
    """Run a worker until SIGINT/SIGTERM.  Example: orchestrator worker examples.greet"""
    from .settings import Settings
    from worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    workflows = load_workflows(module)
    settings = Settings.from_env()
    try:
        settings.require_queue()
    except RuntimeError as e:
        raise _fail(str(e)) from None

    async def main() -> None:
        async with Worker(workflows=workflows, max_concurrent_workflows=concurrency, settings=settings, shutdown_grace=grace) as w:
            await w.run_until_stopped()

    asyncio.run(main())


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="the local API's port")] = 8000,
    aws_port: Annotated[int, typer.Option(help="the moto server's port")] = 5000,
) -> None:
    """Run the embedded stack (moto, API, scheduler emulator, sweeper) until Ctrl-C."""
    from .local import LocalStack

    logging.basicConfig(level=logging.WARNING)
    try:
        stack = LocalStack(aws_port=aws_port, api_port=port).start()
    except OSError as e:
        raise _fail(f"cannot start the local stack: {e} (is the port in use? try --port/--aws-port)") from None
    out.print("[bold]Embedded stack running.[/bold] In another terminal:\n")
    for k, v in stack.exports().items():
        print(f"export {k}={v}")
    out.print(f"\nAPI: {stack.api_url}   then: orchestrator worker examples.all   (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


@app.command()
def demo() -> None:
    """Start everything in one process, run the example workflows end to end, print what happened."""
    from .demo import run_demo

    raise typer.Exit(run_demo(out))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
