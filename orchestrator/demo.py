"""`orchestrator demo`: the embedded stack and a worker in one process, the
example workflows started through the HTTP API, and what happened, printed."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from .client import Client
from .local import LocalStack
from .local.worker_thread import BackgroundWorker


def _steps_table(steps: list[dict[str, Any]]) -> Table:
    table = Table("#", "kind", "name", "outcome", box=None)
    for s in steps:
        if s["kind"] == "step":
            outcome = (
                json.dumps(s.get("result"))
                if not s.get("error")
                else f"error: {s['error']['message']}"
            )
        elif s["kind"] == "sleep":
            outcome = f"slept until {s['wake_at']}"
        else:
            outcome = (
                "timed out" if s.get("timed_out") else f"signal {json.dumps(s.get('payload'))}"
            )
        table.add_row(str(s["position"]), s["kind"], s["name"], outcome)
    return table


def _wait_status(
    client: Client, run_id: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(run_id)
        if run["status"] in statuses or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def run_demo(out: Console) -> int:
    from examples.all import WORKFLOWS

    logging.basicConfig(level=logging.WARNING)
    ok = True
    with LocalStack(background_interval=0.5) as stack:
        out.print(
            f"[bold]Embedded stack[/bold]: moto at {stack.settings.endpoint_url}, API at {stack.api_url}"
        )
        settings = stack.settings.with_(poll_seconds=1)
        with BackgroundWorker(WORKFLOWS, settings, max_concurrent_workflows=8):
            client = Client(stack.api_url)

            def report(title: str, run: dict[str, Any], expect: Any) -> None:
                nonlocal ok
                good = run["status"] == "completed" and (expect is None or run["output"] == expect)
                ok = ok and good
                mark = "[green]ok[/green]" if good else "[red]UNEXPECTED[/red]"
                out.print(f"\n[bold]{title}[/bold]  {run['id']}  {run['status']}  {mark}")
                out.print(f"  input:  {json.dumps(run['input'])}")
                out.print(f"  output: {json.dumps(run['output'])}")
                if run["error"]:
                    out.print(f"  error:  {run['error']['type']}: {run['error']['message']}")
                out.print(_steps_table(client.steps(run["id"])))

            t0 = time.monotonic()
            run = client.start("greet", {"name": "World"})
            run = client.wait(run["id"], timeout=30)
            report(f"greet ({time.monotonic() - t0:.2f} s)", run, {"greeting": "Hello, World!"})

            t0 = time.monotonic()
            run = client.start("reminder", {"email": "ada@example.com", "delay_seconds": 2})
            parked = _wait_status(client, run["id"], {"sleeping", "completed", "failed"})
            out.print(
                f"\nreminder parked: status {parked['status']}, wakes at {parked['wake_at']} (no worker slot held)"
            )
            run = client.wait(run["id"], timeout=60)
            report(f"reminder with a 2 s durable sleep ({time.monotonic() - t0:.2f} s)", run, None)

            t0 = time.monotonic()
            run = client.start("approval", {"user": "ada", "timeout_seconds": 600})
            waiting = _wait_status(client, run["id"], {"waiting", "completed", "failed"})
            out.print(
                f"\napproval is {waiting['status']} for {waiting['waiting_for']!r}; sending the signal"
            )
            client.signal(run["id"], "approved", {"approved": True})
            run = client.wait(run["id"], timeout=30)
            report(f"approval woken by a signal ({time.monotonic() - t0:.2f} s)", run, "done")

            t0 = time.monotonic()
            run = client.start("approval", {"user": "bob", "timeout_seconds": 1})
            run = client.wait(run["id"], timeout=30)
            report(f"approval that times out ({time.monotonic() - t0:.2f} s)", run, "expired")

            t0 = time.monotonic()
            run = client.start("order", {"order_id": "o-1", "amount": 42, "gateway_failures": 1})
            run = client.wait(run["id"], timeout=30)
            report(f"order with a retried charge ({time.monotonic() - t0:.2f} s)", run, "confirmed")
            charge = next(s for s in client.steps(run["id"]) if s["name"] == "charge")
            for attempt in charge.get("attempts", []):
                err = attempt.get("error")
                outcome = f"failed: {err['type']}: {err['message']}" if err else "succeeded"
                out.print(f"  charge attempt {attempt['attempt']}: {outcome}")
            ok = ok and len(charge.get("attempts", [])) == 2

    out.print(
        "\n[bold green]demo finished: every run ended as expected[/bold green]"
        if ok
        else "\n[bold red]demo: some runs did not end as expected[/bold red]"
    )
    out.print(NEXT_STEPS)
    return 0 if ok else 1


# What a newcomer does after the demo (README, "Run it on your machine").
NEXT_STEPS = """
[bold]What to try next[/bold]
  1. [cyan].venv/bin/orchestrator dev[/cyan]   the same stack, kept running, with the dashboard;
     it prints the export lines for a second terminal
  2. in the second terminal: [cyan]source .venv/bin/activate[/cyan], paste the exports, then
     [cyan]orchestrator worker examples.all[/cyan]
  3. in a third (same exports): [cyan]orchestrator start greet --input '{"name": "World"}'[/cyan],
     [cyan]orchestrator list[/cyan], [cyan]orchestrator show <id>[/cyan]
  4. write your own workflow: README, "A workflow"; test it without AWS:
     README, "Testing your workflows"
  5. deploy to AWS: docs/deploy.md"""
