"""`orchestrator schedule ...`: recurring schedules from the shell.

Each command calls the API through the Client, prints a table or a line, and
takes `--json` for scripts; mistakes print one `error:` line (see `cli/__init__.py`).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from . import common as cli_common
from .format import STATUS_STYLE, out
from .jobs import NoWait, follow

schedule_app = typer.Typer(
    help="Recurring schedules that start workflow runs (cron or rate, in a time zone).",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
Name = Annotated[str, typer.Argument(help="The schedule's name.", show_default=False)]
Note = Annotated[str | None, typer.Option("--note", help="Why; shown with the schedule.")]


def _cli() -> Any:
    return cli_common


def _call(method: str, *args: Any, **kwargs: Any) -> Any:
    cli = _cli()
    client = cli._client()
    return cli._call(getattr(client, method), *args, **kwargs)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _table(schedules: list[dict[str, Any]]) -> Table:
    table = Table("name", "workflow", "when", "state", "next fire", "last runs")
    for s in schedules:
        last = Text()
        for e in s["recent"][:5]:
            status = e.get("status") or e["outcome"]
            last.append("● ", style=STATUS_STYLE.get(status, "dim"))
        state = s["state"] + (f" ({s['note']})" if s.get("note") else "")
        when = f"{s['expression']} {s['timezone']}"
        if s["overlap"] != "skip":
            when += f" ({s['overlap']})"
        table.add_row(
            s["name"], s["workflow"], when, state, (s["next_fire_times"] or ["-"])[0], last
        )
    return table


def _print_schedule(s: dict[str, Any]) -> None:
    out.print(_table([s]))
    if s["next_fire_times"]:
        out.print("next: " + ", ".join(s["next_fire_times"]), style="dim")
    if s["recent"]:
        recent = Table("tick", "outcome", "source", "run", "status")
        for e in s["recent"]:
            status = e.get("status") or ""
            recent.add_row(
                e["tick"] or "",
                e["outcome"],
                e.get("source") or "",
                e.get("run_id") or "",
                Text(status, style=STATUS_STYLE.get(status, "")),
            )
        out.print(recent)


@schedule_app.command("create")
def create(
    name: Name,
    workflow: Annotated[
        str, typer.Option("--workflow", "-w", help="The workflow each tick starts.")
    ],
    cron: Annotated[
        str | None, typer.Option("--cron", help='An EventBridge cron: "cron(0 2 * * ? *)".')
    ] = None,
    rate: Annotated[
        str | None, typer.Option("--rate", help='A rate: "rate(5 minutes)" or "5 minutes".')
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone the cron is read in.")] = "UTC",
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="JSON input of every run, or @FILE.")
    ] = None,
    overlap: Annotated[
        str, typer.Option(help="While the previous run goes on: skip, buffer_one or allow_all.")
    ] = "skip",
    catchup_window: Annotated[
        int, typer.Option(help="Seconds a late tick may still start its run.")
    ] = 3600,
    task_queue: Annotated[str | None, typer.Option(help="The task queue of its runs.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a schedule.

    Examples:

      orchestrator schedule create nightly --workflow reconcile --cron "cron(0 2 * * ? *)" --timezone Europe/Paris

      orchestrator schedule create sync --workflow sync --rate "15 minutes" --overlap buffer_one
    """
    cli = _cli()
    if (cron is None) == (rate is None):
        raise cli._fail("give one of --cron and --rate")
    expression = cron if cron is not None else rate
    assert expression is not None
    if cron is not None and not cron.startswith("cron("):
        expression = f"cron({cron})"
    if rate is not None and not rate.startswith("rate("):
        expression = f"rate({rate})"
    value = cli._json_arg(input, "--input")
    s = _call(
        "create_schedule",
        name,
        workflow,
        value,
        expression=expression,
        timezone=timezone,
        overlap=overlap,
        catchup_window=catchup_window,
        task_queue=task_queue,
    )
    if as_json:
        _print_json(s)
        return
    out.print(f"schedule {s['name']}: {s['workflow']} on {s['expression']} ({s['timezone']})")
    if s["next_fire_times"]:
        out.print("next: " + ", ".join(s["next_fire_times"]), style="dim")


@schedule_app.command("list")
def list_schedules(as_json: JsonFlag = False) -> None:
    """List schedules with their next fire time and the outcome of their last runs."""
    found = _call("schedules")
    if as_json:
        _print_json(found)
    elif not found:
        out.print("no schedules")
    else:
        out.print(_table(found))


@schedule_app.command("show")
def show(name: Name, as_json: JsonFlag = False) -> None:
    """Show a schedule: its definition, next fire times and latest decisions."""
    s = _call("schedule", name)
    if as_json:
        _print_json(s)
    else:
        _print_schedule(s)


@schedule_app.command("pause")
def pause(name: Name, note: Note = None, as_json: JsonFlag = False) -> None:
    """Pause a schedule: its ticks start nothing until it is resumed."""
    s = _call("pause_schedule", name, note=note)
    _print_json(s) if as_json else out.print(f"schedule {name} paused")


@schedule_app.command("resume")
def resume(name: Name, note: Note = None, as_json: JsonFlag = False) -> None:
    """Resume a paused schedule (ticks missed while paused are not started)."""
    s = _call("resume_schedule", name, note=note)
    if as_json:
        _print_json(s)
    else:
        nxt = (s["next_fire_times"] or ["-"])[0]
        out.print(f"schedule {name} resumed; next fire {nxt}")


@schedule_app.command("trigger")
def trigger(name: Name, as_json: JsonFlag = False) -> None:
    """Start a run now (the schedule's overlap policy applies)."""
    d = _call("trigger_schedule", name)
    if as_json:
        _print_json(d)
    elif d["outcome"] == "started":
        out.print(f"started {d['run_id']}")
    else:
        out.print(f"not started: {d['outcome']}")


@schedule_app.command("backfill")
def backfill(
    name: Name,
    start: Annotated[str, typer.Option("--start", help="ISO 8601 (UTC if no offset).")],
    end: Annotated[str, typer.Option("--end", help="ISO 8601, not in the future.")],
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Start the runs of every tick in \\[start, end] that has none (idempotent).

    A rate schedule's ticks before it existed count back from its start. The API
    does it as a job: one that goes on past its request is waited for (--no-wait:
    print its id and return; `orchestrator jobs`).

    Example:

      orchestrator schedule backfill nightly --start 2026-11-01 --end 2026-11-07T23:59:59Z
    """
    client = _cli()._client()
    reply = _cli()._call(client.backfill_schedule, name, start, end, wait=None)
    result = follow(client, reply, wait=not no_wait)
    if as_json:
        _print_json(result)
        return
    if result["status"] == "running":
        return
    out.print(
        f"{result['ticks']} tick(s): {result['started_count']} started, "
        f"{result['skipped_count']} already had a run",
        markup=False,
    )
    if result.get("message"):
        out.print(f"job {result['job_id']} {result['status']}: {result['message']}", markup=False)
    if result.get("note"):
        out.print(result["note"], markup=False)


@schedule_app.command("delete")
def delete(name: Name, as_json: JsonFlag = False) -> None:
    """Delete a schedule. Runs it started are left alone."""
    result = _call("delete_schedule", name)
    _print_json(result) if as_json else out.print(f"schedule {name} deleted")


queue_app = typer.Typer(help="Task queues: flow control across every worker.", no_args_is_help=True)


def queues_table(found: list[dict[str, Any]]) -> Table:
    table = Table("queue", "depth", "in flight", "max concurrency", "rate limit", "oldest wait")
    for q in found:
        rate = "-"
        if q["rate_limit"] is not None:
            rate = f"{q['rate_limit']} / {q['rate_period_seconds']:g} s"
        waited = q.get("oldest_wait_seconds")
        table.add_row(
            q["name"],
            str(q["depth"]),
            str(q["in_flight"]),
            "-" if q["max_concurrency"] is None else str(q["max_concurrency"]),
            rate,
            "-" if waited is None else f"{_age(waited)} ({q.get('oldest_waiting_run')})",
        )
    return table


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@queue_app.command("set")
def queue_set(
    name: Annotated[str, typer.Argument(help="The task queue.", show_default=False)],
    max_concurrency: Annotated[
        int | None, typer.Option(help="At most this many runs hold a lease at once.")
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="At most this many claims per --per seconds.")
    ] = None,
    per: Annotated[float, typer.Option(help="The rate limit's period in seconds.")] = 1.0,
    as_json: JsonFlag = False,
) -> None:
    """Set a task queue's flow control at run time (a limit not given is removed).

    Examples:

      orchestrator queue set gpu --max-concurrency 4

      orchestrator queue set partner --rate-limit 100 --per 60
    """
    q = _call(
        "set_queue_limits",
        name,
        max_concurrency=max_concurrency,
        rate_limit=rate_limit,
        rate_period=per if rate_limit is not None else None,
    )
    if as_json:
        _print_json(q)
    else:
        out.print(queues_table([q]))
