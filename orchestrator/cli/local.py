"""Commands that run things on this machine: `dashboard` (the signing proxy),
`workers`, `worker`, `dev` and `demo`. Registered on the main app by
`orchestrator/cli/__init__.py`."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal as signals
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import resources as r
from ..errors import OrchestratorError
from .common import FLAG, JsonFlag, _call, _client, _fail, _options, _print_json
from .format import _workers_table, out

DEV_STATE_DIR = Path(".orchestrator") / "dev"  # under the project the stack runs in


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
    from ..dashboard.proxy import DashboardProxy

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
    from worker import is_workflow

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise _fail(f"cannot import {module_name!r}: {e}") from None
    found = getattr(module, "WORKFLOWS", None)
    if found is None:
        found = [v for v in vars(module).values() if is_workflow(v)]
    if not found:
        raise _fail(f"module {module_name!r} defines no @workflow functions")
    return list(found)


def load_plugin(spec: str) -> Any:
    """`module:name`: the object, or an instance when it is a class."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _fail(f"--plugin {spec!r}: expected module:name, e.g. myapp.telemetry:StepTenant")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise _fail(f"--plugin {spec!r}: {e}") from None
    if isinstance(found, type):
        try:
            return found()
        except TypeError as e:
            raise _fail(f"--plugin {spec!r}: the class takes arguments ({e})") from None
    return found


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
    plugin: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin",
            help="A plugin, module:name (a class is instantiated with no arguments); "
            "repeat for several, called in this order.",
        ),
    ] = None,
) -> None:
    """Run a worker until SIGINT/SIGTERM.

    It needs the exports `orchestrator dev` prints, or the deployed stack's outputs.

    Examples:

      orchestrator worker examples.all

      orchestrator worker myapp.workflows --concurrency 50 --metrics-port 9464

      orchestrator worker myapp.training --task-queue gpu

      orchestrator worker myapp.workflows --plugin myapp.telemetry:StepTenant
    """
    from worker import Worker, configure_logging

    from ..settings import Settings

    if log_format not in ("json", "text"):
        raise _fail("--log-format is json or text")
    configure_logging(log_format)
    workflows = load_workflows(module)
    plugins = [load_plugin(spec) for spec in plugin or []]
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
            plugins=plugins,
        )
    except (TypeError, ValueError) as e:
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
    """Run the embedded stack and the dashboard until Ctrl-C (SIGINT) or SIGTERM.

    moto, the API and the dashboard on localhost, the scheduler emulator and the
    sweeper, in one process. It prints the exports a second terminal needs. Runs,
    inboxes, callbacks, timers, recurring schedules, pinned builds' queues and
    large values are saved to --state-dir every few seconds and at stop (SIGINT
    and SIGTERM both save), and restored at the next start.

    Examples:

      orchestrator dev

      orchestrator dev --port 8080 --aws-port 5050 --state-dir /tmp/orchestrator-dev --fresh
    """
    LocalStack = _local_stack()
    from ..local.snapshot import FILE_NAME, StateFile, restore
    from ..settings import Settings, parse_task_queues

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
            f"{restored['unfinished']} unfinished, {restored['schedules']} timer(s), "
            f"{restored['recurring']} recurring schedule(s), {restored['values']} large value(s)"
        )
    else:
        out.print(f"State:     {path} ({'--fresh: ' if fresh else ''}starting empty)")
    out.print("then: orchestrator worker examples.all   (Ctrl-C to stop)")
    try:
        name = _wait_for_stop_signal()
        out.print(f"\n{name}: stopping; saving the state")
    finally:
        try:
            saved = saver.stop(hold=True)  # no write lands beside the last snapshot
            out.print(
                f"state saved to {path}: {saved['runs']} run(s), {saved['recurring']} "
                f"recurring schedule(s), {saved['values']} large value(s)"
            )
        finally:
            stack.stop()


def _wait_for_stop_signal() -> str:
    """Block until SIGINT or SIGTERM; the signal's name. Both handlers are
    installed here: a process started in the background by a shell script
    inherits SIGINT ignored, and SIGTERM's default ends the process without
    saving anything."""
    got: list[str] = []
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        got.append(signals.Signals(signum).name)
        stop.set()

    previous = {sig: signals.signal(sig, handler) for sig in (signals.SIGINT, signals.SIGTERM)}
    try:
        while not stop.wait(3600):
            pass
    finally:
        for sig, old in previous.items():
            signals.signal(sig, old)
    return got[0]


def _local_stack() -> Any:
    """LocalStack, or a clear message: moto is in the [local] extra, not in the
    base install that production workers use."""
    try:
        from ..local import LocalStack
    except ImportError as e:
        raise _fail(
            f"the embedded stack needs the [local] extra ({e.name} is missing): "
            "pip install -e '.[local]' in a clone of the repository"
        ) from None
    return LocalStack


def demo() -> None:
    """Run the example workflows end to end in one process.

    The embedded stack and a worker start in this process; four runs go through
    the HTTP API and what happened is printed.

    Example:

      orchestrator demo
    """
    _local_stack()
    from ..demo import run_demo

    with out.status("demo running… (the embedded stack, a worker, four example runs)"):
        code = run_demo(out)
    raise typer.Exit(code)
