"""Rendering for the CLI: tables of runs and steps, times and durations."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console(highlight=False)

TERMINAL = {"completed", "failed", "cancelled"}
STATUS_STYLE = {
    "pending": "white",
    "running": "bold blue",
    "sleeping": "magenta",
    "waiting": "yellow",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "dim",
}


def _ms(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso).timestamp() * 1000


def _span(ms: float | None) -> str:
    if ms is None:
        return ""
    ms = max(0.0, ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"
    s = int(ms // 1000)
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s // 60 % 60:02d}m"
    return f"{s // 86400}d {s // 3600 % 24}h"


def _now_ms() -> float:
    return time.time() * 1000


def _ago(iso: str | None) -> str:
    then = _ms(iso)
    if then is None:
        return ""
    s = (_now_ms() - then) / 1000
    if s < 5:
        return "just now"
    if s < 60:
        return f"{s:.0f} s ago"
    if s < 3600:
        return f"{s // 60:.0f} min ago"
    if s < 86400:
        return f"{s // 3600:.0f} h ago"
    return f"{s // 86400:.0f} d ago"


def _until(iso: str | None) -> str:
    then = _ms(iso)
    if then is None:
        return ""
    delta = then - _now_ms()
    return f"in {_span(delta)}" if delta > 0 else f"{_span(-delta)} ago"


def _local(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _duration(run: dict[str, Any]) -> str:
    created = _ms(run["created_at"])
    if created is None:
        return ""
    if run["status"] in TERMINAL:
        return _span((_ms(run["updated_at"]) or created) - created)
    return _span(_now_ms() - created)


def _compact(value: Any, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _detail(run: dict[str, Any]) -> str:
    if run.get("error"):
        return f"{run['error']['type']}: {run['error']['message']}"
    if run.get("cancel_requested") and run["status"] not in TERMINAL:
        return "cancel requested"
    if run.get("unserved"):
        return f"no live worker serves {run['name']!r}"
    if run["status"] == "waiting":
        timeout = f", times out {_until(run['wake_at'])}" if run.get("wake_at") else ""
        return f"waiting for {run['waiting_for']!r}{timeout}"
    if run["status"] == "sleeping" and run.get("wake_at"):
        return f"wakes {_until(run['wake_at'])}"
    if run["status"] == "completed":
        return "→ " + _compact(run.get("output"))
    return ""


def _outcome(step: dict[str, Any]) -> str:
    kind = step["kind"]
    if kind == "step":
        if step.get("retry_at"):
            return f"attempt failed; next attempt {_until(step['retry_at'])}"
        if step.get("error"):
            return f"{step['error']['type']}: {step['error']['message']}"
        return _compact(step.get("result"), 100)
    if kind == "sleep":
        return f"sleep until {_local(step['wake_at'])} ({_until(step['wake_at'])})"
    deadline = f", deadline {_local(step['deadline'])}" if step.get("deadline") else ""
    if step.get("timed_out"):
        return f"signal {step['signal']!r} timed out{deadline}"
    if step.get("resolved"):
        return f"signal {step['signal']!r}: {_compact(step.get('payload'), 90)}"
    return f"waiting for signal {step['signal']!r}{deadline}"


def _took(step: dict[str, Any]) -> str:
    started = _ms(step.get("started_at"))
    if started is None:
        return ""
    if step["kind"] == "sleep":
        return _span((_ms(step.get("wake_at")) or started) - started)
    if step["kind"] == "wait" and not step.get("resolved"):
        return _span(_now_ms() - started)
    return _span((_ms(step.get("recorded_at")) or started) - started)


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    """Every column keeps its full width (an id is never cut); DETAIL gets the
    rest of the line, cut with an ellipsis, and is left out when none is left."""
    rows = [
        [run["status"], run["name"], run["id"], _ago(run["created_at"]), _duration(run)]
        for run in runs
    ]
    titles = ["STATUS", "NAME", "ID", "STARTED", "DURATION"]
    widths = [max(len(t), *(len(row[i]) for row in rows)) for i, t in enumerate(titles)]
    room = out.width - sum(widths) - 2 * len(widths)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title, w in zip(titles, widths, strict=True):
        table.add_column(title, no_wrap=True, min_width=w)
    if room >= 12:
        table.add_column("DETAIL", no_wrap=True, overflow="ellipsis", style="dim", max_width=room)
    for run, row in zip(runs, rows, strict=True):
        cells: list[Any] = [_status(run["status"]), *row[1:]]
        if room >= 12:
            cells.append(_detail(run))
        table.add_row(*cells)
    return table


def _steps_table(steps: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("KIND", no_wrap=True)
    table.add_column("NAME", no_wrap=True)
    table.add_column("STARTED", no_wrap=True)
    table.add_column("TOOK", no_wrap=True)
    table.add_column("OUTCOME", overflow="fold")
    for s in steps:
        attempts = len(s.get("attempts") or [])
        outcome = _outcome(s) + (f"  ({attempts} attempts)" if attempts > 1 else "")
        style = "red" if s.get("error") and not s.get("retry_at") else ""
        table.add_row(
            str(s["position"]),
            s["kind"],
            s["name"],
            _local(s.get("started_at"))[11:],
            _took(s),
            Text(outcome, style=style),
        )
    return table


def _print_run(run: dict[str, Any], *, traceback: bool = True) -> None:
    head = Text.assemble((run["name"], "bold"), "  ", _status(run["status"]), "  ", run["id"])
    out.print(head)
    took = "took" if run["status"] in TERMINAL else "running for"
    out.print(
        f"  created {_local(run['created_at'])} ({_ago(run['created_at'])}), "
        f"{took} {_duration(run)}, worker claims {run['attempt']}"
    )
    if run.get("waiting_for"):
        timeout = f", times out {_until(run['wake_at'])}" if run.get("wake_at") else ""
        out.print(f"  waiting for signal {run['waiting_for']!r}{timeout}")
    elif run["status"] == "sleeping" and run.get("wake_at"):
        out.print(f"  sleeping until {_local(run['wake_at'])} ({_until(run['wake_at'])})")
    if run.get("deadline_at"):
        out.print(f"  execution deadline {_local(run['deadline_at'])}")
    if run.get("cancel_requested"):
        out.print(f"  cancel requested: {run['cancel_requested']}")
    if run.get("unserved"):
        out.print(
            Text(
                f"  no live worker serves {run['name']!r} (see `orchestrator workers`)",
                style="yellow",
            )
        )
    out.print(f"input:  {json.dumps(run['input'])}", soft_wrap=True)
    if run["status"] == "completed":
        out.print(f"output: {json.dumps(run['output'])}", soft_wrap=True)
    if run.get("error"):
        error = run["error"]
        out.print(Text(f"error:  {error['type']}: {error['message']}", style="red"), soft_wrap=True)
        if traceback and error.get("traceback"):
            out.print(Text(error["traceback"].rstrip(), style="dim"), soft_wrap=True)


# --- the API from the shell ---------------------------------------------------------------------


def _workers_table(workers: list[dict[str, Any]]) -> Table:
    table = Table("id", "host", "serves", "queues", "busy", "last seen", "live")
    for w in workers:
        seen = datetime.fromtimestamp(w["last_seen"] / 1000).strftime("%H:%M:%S")
        busy = f"{w['busy']}/{w['concurrency']}"
        live = "yes" if w["live"] else "no"
        queues = ", ".join(w.get("task_queues") or ["default"])
        table.add_row(w["id"], w["host"], ", ".join(w["names"]), queues, busy, seen, live)
    return table
