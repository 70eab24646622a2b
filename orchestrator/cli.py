"""The `orchestrator` command: the embedded stack, a worker, and the API from
the shell.

Every command that reads the API prints a readable table and takes `--json`
for scripts (the API's JSON, unchanged, on stdout). A user mistake (bad JSON,
an unknown id, the API unreachable, a missing setting, a wrong option) prints
one `error:` line on stderr and exits non-zero; never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal as signals
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from . import resources as r
from .cli_format import (
    TERMINAL,
    _inbox_table,
    _outcome,
    _print_run,
    _runs_table,
    _status,
    _steps_table,
    _workers_table,
    out,
)
from .cli_versions import register as register_versions
from .errors import OrchestratorError
from .settings import ConfigError

app = typer.Typer(
    help="Durable workflows on DynamoDB, SQS and EventBridge Scheduler.\n\n"
    "Start with `orchestrator dev` (the embedded stack; it prints the exports and the "
    "dashboard URL), then `orchestrator worker examples.all` and "
    '`orchestrator start greet --input \'{"name": "World"}\'`.',
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, highlight=False)

STATUSES = ("pending", "running", "sleeping", "waiting", "completed", "failed", "cancelled")
_options: dict[str, Any] = {"api_url": None}

DEV_STATE_DIR = Path(".orchestrator") / "dev"  # under the project the stack runs in

# Flags take no value: no "<bool>" in --help (click 8.2+ shows one by default).
FLAG = ""
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON instead of a table.", metavar=FLAG)
]
RunId = Annotated[str, typer.Argument(help="The run's id.", show_default=False, metavar="ID")]


# --- errors: one line, non-zero --------------------------------------------------------------
def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _json_arg(text: str | None, what: str) -> Any:
    """A JSON option's value; `@path` reads the JSON from a file."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as e:
            raise _fail(f"{what}: cannot read {text[1:]!r}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(f"{what} is not valid JSON: {e}") from None


def _client() -> Any:
    from .client import Client

    try:
        return Client(_options["api_url"])
    except OrchestratorError as e:
        raise _fail(e.message) from None


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except OrchestratorError as e:
        raise _fail(e.message) from None
    except TimeoutError as e:
        raise _fail(str(e) or "the API did not answer in time") from None
    except OSError as e:
        raise _fail(f"cannot reach the API: {e}") from None


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


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


@app.command()
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


@app.command("list")
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


@app.command()
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
    _print_run(run)
    if steps:
        out.print()
        out.print(_steps_table(steps, run))
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
                run = _call(client.get, workflow_id)
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


@app.command()
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


@app.command()
def signal(
    workflow_id: RunId,
    name: Annotated[str, typer.Argument(help="Signal name.", show_default=False)],
    payload: Annotated[
        str | None,
        typer.Option("--payload", "-p", help="JSON payload, or @FILE to read it from a file."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Send a signal to a run; it is buffered until the run waits for it.

    Examples:

      orchestrator signal approval-ada approved --payload '{"approved": true}'

      orchestrator signal approval-ada approved --json
    """
    value = _json_arg(payload, "--payload")
    sent = _call(_client().signal, workflow_id, name, value)
    if as_json:
        _print_json(sent)
        return
    effect = "it woke the run" if sent["woke"] else "buffered until the run waits for it"
    out.print(f"signal {sent['signal']!r} sent to {workflow_id} (#{sent['seq']}): {effect}")
    if sent.get("warning"):
        err.print(f"warning: {sent['warning']} (see `orchestrator inbox {workflow_id}`)")


@app.command()
def terminate(
    workflow_id: RunId,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; recorded on the run.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """End a run now, with no cleanup (cancel lets a running run clean up first).

    Examples:

      orchestrator terminate order-42 --reason "stuck on a dead gateway"
    """
    res = _call(_client().terminate, workflow_id, reason=reason)
    if as_json:
        _print_json(res)
        return
    out.print(f"{workflow_id}: {res['message']}")


@app.command()
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


@app.command()
def bulk(
    action: Annotated[str, typer.Argument(help="cancel or terminate.", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs created at or after (ISO 8601).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only runs created before (ISO 8601).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why; recorded on each run.")] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do it (default: a dry run that counts).", metavar=FLAG)
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel or terminate every unfinished run a filter matches.

    A dry run by default: it prints how many runs match. --yes acts on them,
    refused if the count changed since the dry run it makes first.

    Examples:

      orchestrator bulk cancel --name approval --status waiting --until 2026-11-01

      orchestrator bulk terminate --name order --since 2026-11-26T09:00 --yes
    """
    client = _client()
    filters = {
        "name": name,
        "status": status,
        "created_after": since,
        "created_before": until,
        "reason": reason,
    }
    counted = _call(client.bulk, action, **filters)
    more = " (the first 1000; narrow the filter for the rest)" if counted["truncated"] else ""
    if not yes:
        if as_json:
            _print_json(counted)
            return
        out.print(
            f"dry run: {counted['count']} unfinished run(s) match{more}; add --yes to {action} them"
        )
        for run_id in counted["sample"]:
            out.print(f"  {run_id}")
        return
    done = _call(client.bulk, action, **filters, dry_run=False, confirm_count=counted["count"])
    if as_json:
        _print_json(done)
        return
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(done["outcomes"].items()))
    out.print(f"{action}: {done['count']} run(s){more}: {summary or 'nothing to do'}")


@app.command()
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


@app.command()
def cancel(
    workflow_id: RunId,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; recorded on the run.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a run.

    A pending, sleeping or waiting run is cancelled at once; a running run at its
    next durable call.

    Examples:

      orchestrator cancel approval-ada

      orchestrator cancel approval-ada --reason "duplicate request" --json
    """
    client = _client()
    kwargs = {"reason": reason} if reason else {}
    result = _call(client.cancel, workflow_id, **kwargs)
    if as_json:
        _print_json(result)
        return
    message = result.get("message") or result.get("outcome", "")
    out.print(Text.assemble(f"{workflow_id}: ", _status(result["status"]), f"  {message}"))


callback_app = typer.Typer(
    help="Complete or heartbeat a callback a workflow created (by its id, the token).",
    no_args_is_help=True,
)
app.add_typer(callback_app, name="callback")
CallbackId = Annotated[
    str, typer.Argument(help="The callback's id (cb.id).", show_default=False, metavar="ID")
]


@callback_app.command("succeed")
def callback_succeed(
    callback_id: CallbackId,
    result: Annotated[
        str | None,
        typer.Option("--result", "-r", help="JSON result, or @FILE to read it from a file."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Complete a callback with a result.

    Example:

      orchestrator callback succeed ID --result '{"approved": true}'
    """
    value = _json_arg(result, "--result")
    reply = _call(_client().callback_succeed, callback_id, value)
    _callback_done(reply, as_json)


@callback_app.command("fail")
def callback_fail(
    callback_id: CallbackId,
    error_type: Annotated[
        str, typer.Option("--type", help="The error's type, e.g. Rejected.")
    ] = "Error",
    message: Annotated[str, typer.Option("--message", "-m", help="The error message.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Complete a callback with a failure (the workflow gets CallbackFailedError).

    Example:

      orchestrator callback fail ID --type Rejected --message "over budget"
    """
    reply = _call(_client().callback_fail, callback_id, error_type, message)
    _callback_done(reply, as_json)


@callback_app.command("heartbeat")
def callback_heartbeat(callback_id: CallbackId, as_json: JsonFlag = False) -> None:
    """Keep a callback with a heartbeat timeout alive."""
    reply = _call(_client().callback_heartbeat, callback_id)
    if as_json:
        _print_json(reply)
        return
    deadline = reply.get("heartbeat_deadline")
    out.print(
        f"heartbeat recorded; next one due by {deadline}" if deadline else "heartbeat recorded"
    )


def _callback_done(reply: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(reply)
        return
    effect = "it woke the run" if reply["woke"] else "kept until the run waits for it"
    out.print(f"callback {reply['outcome']}: {effect}")


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(help="The local port to serve on.")] = 8001,
    auth: Annotated[
        str,
        typer.Option(
            envvar=r.ENV_API_AUTH,
            help="How to sign requests to the API: iam (SigV4, the AWS credential chain) or none.",
        ),
    ] = "iam",
    token: Annotated[
        str | None,
        typer.Option(
            envvar=r.ENV_API_TOKEN,
            help="A bearer token (JWT) to send instead, for an API with a JWT authorizer.",
        ),
    ] = None,
) -> None:
    """Open a deployed API's dashboard: a local proxy that adds your credentials.

    The deployed API requires authentication on every route, the dashboard's too,
    and a browser cannot sign requests. This serves on 127.0.0.1 and forwards each
    request to --api-url, signed with SigV4 (or with --token). Locally, `orchestrator
    dev` prints a dashboard URL that needs none of this.

    Examples:

      orchestrator --api-url https://abc123.execute-api.eu-west-1.amazonaws.com dashboard

      ORCHESTRATOR_API_TOKEN=$(get-token) orchestrator dashboard --port 9000
    """
    from .dashboard.proxy import DashboardProxy

    api_url = _options["api_url"]
    if not api_url:
        raise _fail(f"no API URL: pass --api-url or set {r.ENV_API_URL}")
    try:
        proxy = DashboardProxy(api_url, auth=auth.lower(), token=token, port=port)
    except OrchestratorError as e:
        raise _fail(e.message) from None
    except OSError as e:
        raise _fail(f"cannot listen on port {port}: {e.strerror} (try --port)") from None
    out.print(f"Dashboard: {proxy.open_url}  (proxy to {api_url}; Ctrl-C to stop)")
    out.print("The URL carries a token: whoever has it acts with your credentials.")
    with contextlib.suppress(KeyboardInterrupt):
        proxy.serve_forever()


# --- running things ---------------------------------------------------------------------------------
@app.command()
def workers(
    include_stopped: Annotated[
        bool, typer.Option("--all", help="Include stopped and silent workers.", metavar=FLAG)
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List the workers that registered, live ones first: the names they serve.

    A run whose name no live worker serves is flagged "unserved" by `list` and `show`.

    Examples:

      orchestrator workers

      orchestrator workers --all --json
    """
    found = _call(_client().workers, include_stopped=include_stopped)
    if as_json:
        _print_json(found)
        return
    if not found:
        out.print("no live workers" + ("" if include_stopped else " (--all shows stopped ones)"))
        return
    out.print(_workers_table(found))


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
    module: Annotated[
        str, typer.Argument(help="Importable module with @workflow functions.", show_default=False)
    ],
    concurrency: Annotated[int, typer.Option(help="Max runs in flight.")] = 10,
    grace: Annotated[float, typer.Option(help="Seconds running runs get at shutdown.")] = 10.0,
    log_format: Annotated[
        str, typer.Option(help="json (one object per line, with run context) or text.")
    ] = "json",
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (/metrics).")
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            help="The address the metrics endpoint listens on (0.0.0.0 for a remote scraper)."
        ),
    ] = "127.0.0.1",
    build_id: Annotated[
        str | None,
        typer.Option(
            envvar=r.ENV_BUILD_ID,
            help="This worker's build id, recorded on the runs it claims first.",
        ),
    ] = None,
    task_queue: Annotated[
        list[str] | None,
        typer.Option(
            "--task-queue",
            help="A task queue to poll (repeat for several). Default: the queues the "
            "workflows declare, and default.",
        ),
    ] = None,
) -> None:
    """Run a worker until SIGINT/SIGTERM.

    It needs the exports `orchestrator dev` prints, or the deployed stack's outputs.

    Examples:

      orchestrator worker examples.all

      orchestrator worker myapp.workflows --concurrency 50 --metrics-port 9464

      orchestrator worker myapp.training --task-queue gpu
    """
    from worker import Worker
    from worker._logs import configure_logging

    from .settings import Settings

    if log_format not in ("json", "text"):
        raise _fail("--log-format is json or text")
    configure_logging(log_format)
    workflows = load_workflows(module)
    try:
        settings = Settings.from_env()
        settings.require_queue()
    except (RuntimeError, ValueError) as e:
        raise _fail(str(e)) from None

    try:
        w = Worker(
            workflows=workflows,
            max_concurrent_workflows=concurrency,
            settings=settings,
            shutdown_grace=grace,
            build_id=build_id,
            task_queues=task_queue or None,
        )
    except ValueError as e:
        raise _fail(str(e)) from None

    async def main() -> None:
        async with w:
            if metrics_port is not None:
                port = w.metrics.serve(metrics_port, host=metrics_host)
                logging.getLogger("worker").info("metrics on %s:%d/metrics", metrics_host, port)
            await w.run_until_stopped()
            _exit_on_next_signal(w)  # the loop's own handlers are gone by now

    asyncio.run(main())
    if w.step_threads():
        w.join_step_threads()


def _exit_on_next_signal(w: Any) -> None:
    """A sync step still running in a thread keeps the process alive (threads
    cannot be interrupted). After a second signal, exit now; otherwise wait for
    it, and exit at the next signal."""
    if not w.step_threads():
        return
    log = logging.getLogger("worker")

    def now(*_: Any) -> None:
        log.warning("exiting now; step thread(s) abandoned: %s", ", ".join(w.step_threads()))
        logging.shutdown()
        os._exit(130)

    for sig in (signals.SIGINT, signals.SIGTERM):
        signals.signal(sig, now)
    if w.forced:
        now()
    log.warning(
        "the process exits when %s returns; Ctrl-C again to exit now",
        ", ".join(w.step_threads()),
    )


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="The local API's port.")] = 8000,
    aws_port: Annotated[int, typer.Option(help="The moto server's port.")] = 5000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A Host name the API accepts besides loopback ones (a name you point at "
            "127.0.0.1 yourself); repeatable. Other names are refused (DNS rebinding).",
        ),
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(help="Where the stack keeps its state across restarts."),
    ] = DEV_STATE_DIR,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start empty (the saved state is replaced).", metavar=FLAG),
    ] = False,
    task_queue: Annotated[
        list[str] | None,
        typer.Option(
            "--task-queue",
            help=f"A task queue besides default (repeat; or {r.ENV_TASK_QUEUES}=gpu,bulk).",
        ),
    ] = None,
) -> None:
    """Run the embedded stack and the dashboard until Ctrl-C.

    moto, the API and the dashboard on localhost, the scheduler emulator and the
    sweeper, in one process. It prints the exports a second terminal needs. Runs,
    schedules, timers and inboxes are saved to --state-dir every few seconds and
    at stop, and restored at the next start.

    Examples:

      orchestrator dev

      orchestrator dev --port 8080 --aws-port 5050 --state-dir /tmp/orchestrator-dev --fresh
    """
    LocalStack = _local_stack()
    from .local.snapshot import FILE_NAME, StateFile, restore
    from .settings import Settings, parse_task_queues

    logging.basicConfig(level=logging.WARNING)
    names = ",".join([os.environ.get(r.ENV_TASK_QUEUES, ""), *(task_queue or [])])
    try:
        settings = Settings(task_queues=parse_task_queues(names))
    except ValueError as e:
        raise _fail(str(e)) from None
    try:
        stack = LocalStack(
            aws_port=aws_port,
            api_port=port,
            settings=settings,
            allowed_hosts=tuple(allowed_host or ()),
        ).start()
    except OSError as e:
        raise _fail(
            f"cannot start the local stack: {e} (is the port in use? try --port/--aws-port)"
        ) from None
    path = state_dir.resolve() / FILE_NAME
    try:
        restored = None if fresh else restore(stack, path)
    except (ValueError, OSError) as e:
        stack.stop()
        raise _fail(f"cannot restore {path}: {e} (--fresh starts empty)") from None
    saver = StateFile(stack, state_dir.resolve()).start()
    out.print("[bold]Embedded stack running.[/bold] In another terminal:\n")
    for k, v in stack.exports().items():
        print(f"export {k}={v}")
    out.print(f"\nAPI:       {stack.api_url}")
    out.print(f"Dashboard: {stack.api_url}/")
    if restored:
        out.print(
            f"State:     {path}: restored {restored['runs']} run(s), "
            f"{restored['unfinished']} unfinished, {restored['schedules']} schedule(s)"
        )
    else:
        out.print(f"State:     {path} ({'--fresh: ' if fresh else ''}starting empty)")
    out.print("then: orchestrator worker examples.all   (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            saved = saver.stop()
            out.print(f"\nstate saved to {path}: {saved['runs']} run(s)")
        finally:
            stack.stop()


def _local_stack() -> Any:
    """LocalStack, or a clear message: moto is in the [local] extra, not in the
    base install that production workers use."""
    try:
        from .local import LocalStack
    except ImportError as e:
        raise _fail(
            f"the embedded stack needs the [local] extra ({e.name} is missing): "
            "pip install 'orchestrator[local]'"
        ) from None
    return LocalStack


@app.command()
def demo() -> None:
    """Run the example workflows end to end in one process.

    The embedded stack and a worker start in this process; four runs go through
    the HTTP API and what happened is printed.

    Example:

      orchestrator demo
    """
    _local_stack()
    from .demo import run_demo

    with out.status("demo running… (the embedded stack, a worker, four example runs)"):
        code = run_demo(out)
    raise typer.Exit(code)


def _add_subcommands() -> None:
    from .cli_schedules import queue_app, schedule_app

    app.add_typer(schedule_app, name="schedule")
    app.add_typer(queue_app, name="queue")


@app.command()
def queues(as_json: JsonFlag = False) -> None:
    """List task queues: depth, runs in flight, flow-control limits.

    Examples:

      orchestrator queues

      orchestrator queue set gpu --max-concurrency 4
    """
    from .cli_schedules import queues_table

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


register_versions(app)  # replay-check, redrive, fork (orchestrator/cli_versions.py)


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
