"""Rendering for the CLI: tables of runs and steps, times and durations."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..step_order import display_order

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


def _unavailable(view: dict[str, Any], key: str) -> str | None:
    """Why a value the API (or its S3 link) could not give is missing, if it is."""
    link = view.get(f"{key}_link")
    return link.get("unavailable") if isinstance(link, dict) else None


def _shown(view: dict[str, Any], key: str, limit: int | None = None) -> str:
    """A value as one line: its JSON, or a marker when it is no longer stored."""
    gone = _unavailable(view, key)
    if gone:
        return f"<value unavailable: {gone}>"
    text = json.dumps(view.get(key))
    return text if limit is None else _compact(view.get(key), limit)


def _detail(run: dict[str, Any]) -> str:
    if run.get("error"):
        return f"{run['error']['type']}: {run['error']['message']}"
    if run.get("cancel_requested") and run["status"] not in TERMINAL:
        return "cancel requested"
    if run.get("unserved"):
        return f"no live worker serves {run['name']!r}"
    if run.get("stranded"):
        return f"stranded: no live worker of build {run.get('build_id')} (migrate it)"
    if run["status"] == "waiting":
        timeout = f", times out {_until(run['wake_at'])}" if run.get("wake_at") else ""
        return f"waiting for {_waits(run)}{timeout}"
    if run["status"] == "sleeping" and run.get("wake_at"):
        return f"wakes {_until(run['wake_at'])}"
    if run["status"] == "completed":
        return "→ " + _shown(run, "output", 80)
    return ""


def _waits(run: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> str:
    """What a waiting run waits for: signals by name, callbacks and child runs by
    their operation's name when `steps` are known (else by operation id)."""
    names = {s["id"]: s["name"] for s in steps or []}

    def op(kind: str, op_id: str, unnamed: str) -> str:
        return f"{kind} {names[op_id]!r}" if op_id in names else f"{kind} {unnamed} {op_id}"

    parts = [f"signal {n!r}" for n in (run.get("waiting_for") or "").split(",") if n]
    parts += [op("callback", o, "at operation") for o in run.get("waiting_for_callbacks") or []]
    parts += [op("child run of", o, "operation") for o in run.get("waiting_for_children") or []]
    return " or ".join(parts) or "a signal"


def _outcome(step: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    kind = step["kind"]
    if kind in ("parallel", "map"):
        return _batch_summary(step)
    if kind in ("context", "branch", "condition"):
        if step.get("error"):
            return f"{step['error']['type']}: {step['error']['message']}"
        if step.get("replay_children"):
            return "completed (result too large to keep: replayed from its operations)"
        return _compact(step.get("result"), 100)
    if kind == "cancel":
        return f"cancel delivered: {step.get('reason')}"
    if kind == "invoke":
        child = step.get("child_id")
        if not step.get("child_status"):
            return f"waiting for child run {child}"
        if step.get("error"):
            err = step["error"]
            return (
                f"child run {child} {step['child_status']}: {err.get('type')}: {err.get('message')}"
            )
        return f"child run {child} completed: {_compact(step.get('result'), 80)}"
    if kind == "step":
        if step.get("retry_at"):
            return f"attempt failed; next attempt {_until(step['retry_at'])}"
        if step.get("error"):
            return f"{step['error']['type']}: {step['error']['message']}"
        return _shown(step, "result", 100)
    if kind == "sleep":
        return f"sleep until {_local(step['wake_at'])} ({_until(step['wake_at'])})"
    if kind == "patch":
        return f"patch marker: this run took the code path of patch {step['name']!r}"
    deadline = f", deadline {_local(step['deadline'])}" if step.get("deadline") else ""
    if kind == "callback":
        name = f"callback {step['name']!r}"
        if step.get("timed_out"):
            return f"{name} timed out{deadline}"
        if step.get("error"):
            return f"{name} failed: {step['error'].get('type')}: {step['error'].get('message')}"
        if step.get("resolved"):
            return f"{name} completed: {_compact(step.get('result'), 90)}"
        if run is not None and run["status"] in TERMINAL:
            return f"{name} never completed: the run ended ({run['status']})"
        return f"waiting for {name} (id {step.get('callback_id')}){deadline}"
    if step.get("timed_out"):
        return f"signal {step['signal']!r} timed out{deadline}"
    if step.get("resolved"):
        return f"signal {step['signal']!r}: {_compact(step.get('payload'), 90)}"
    if run is not None and run["status"] in TERMINAL:
        return f"signal {step['signal']!r} never came: the run ended ({run['status']})"
    return f"waiting for signal {step['signal']!r}{deadline}"


def _took(step: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    """A wait still open lasts until now, unless its run ended: then until the end."""
    started = _ms(step.get("started_at"))
    if started is None or step["kind"] == "patch":  # a marker has no duration
        return ""
    if step["kind"] == "sleep":
        return _span((_ms(step.get("wake_at")) or started) - started)
    if step["kind"] in ("wait", "callback") and not step.get("resolved"):
        if run is not None and run["status"] in TERMINAL:
            return _span((_ms(run.get("updated_at")) or started) - started)
        return _span(_now_ms() - started)
    return _span((_ms(step.get("recorded_at")) or started) - started)


def _runs_table(runs: list[dict[str, Any]], width: int | None = None) -> Any:
    """Every column keeps its full width (an id is never cut). DETAIL gets the
    rest of the line, cut with an ellipsis; on a terminal too narrow for it
    (80 columns) each run's detail goes on a line of its own below it. Piped
    output is never cut (`width` None and not a terminal: no limit)."""
    rows = [
        [run["status"], run["name"], run["id"], _ago(run["created_at"]), _duration(run)]
        for run in runs
    ]
    titles = ["STATUS", "NAME", "ID", "STARTED", "DURATION"]
    if any(run.get("build_id") for run in runs):  # workers declare build ids
        titles.append("BUILD")
        for run, row in zip(runs, rows, strict=True):
            row.append(run.get("build_id") or "-")
    widths = [max(len(t), *(len(row[i]) for row in rows)) for i, t in enumerate(titles)]
    if width is None:
        width = out.width if out.is_terminal else 100_000
    room = width - sum(widths) - 2 * len(widths)
    if room < 20:
        return _runs_stacked(runs, rows, titles, widths, width)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title, w in zip(titles, widths, strict=True):
        table.add_column(title, no_wrap=True, min_width=w)
    table.add_column("DETAIL", no_wrap=True, overflow="ellipsis", style="dim", max_width=room)
    for run, row in zip(runs, rows, strict=True):
        table.add_row(_status(run["status"]), *row[1:], _detail(run))
    return table


def _batch_summary(step: dict[str, Any]) -> str:
    items = step.get("items") or []
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    reason = step.get("completion_reason") or "running"
    return f"{len(items)} branches: " + (", ".join(parts) or "none") + f" ({reason})"


COLLAPSE_OVER = 10  # a batch with more branches shows its failed branches only
SHOWN_FAILED = 5


def _visible_steps(steps: list[dict[str, Any]], expand: bool) -> list[dict[str, Any] | str]:
    """The steps to print, in order; a batch of many branches is collapsed into a
    line of counts, with the operations of its first failed branches kept
    (failures first). Strings are summary lines."""
    steps = display_order(steps)  # the API's order already; older APIs listed task scopes last
    if expand:
        return list(steps)
    batches = {
        s["id"]: s
        for s in steps
        if s["kind"] in ("parallel", "map") and len(s.get("items") or []) > COLLAPSE_OVER
    }
    # An unfinished batch has no items yet: count its branches from their operation ids.
    for s in steps:
        if s["kind"] in ("parallel", "map") and s["id"] not in batches:
            branches = {
                o["id"][len(s["id"]) + 1 :].split(".")[0]
                for o in steps
                if o["id"].startswith(s["id"] + ".")
            }
            if len(branches) > COLLAPSE_OVER:
                batches[s["id"]] = s
    out_rows: list[dict[str, Any] | str] = []
    for s in steps:
        owner = next((b for b in batches if s["id"].startswith(b + ".")), None)
        if owner is None:
            out_rows.append(s)
            if s["id"] in batches:
                out_rows.extend(_failed_first(s, steps))
    return out_rows


def _failed_first(batch: dict[str, Any], steps: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
    prefix = batch["id"] + "."
    inside = [o for o in steps if o["id"].startswith(prefix)]
    failed = [str(i["index"]) for i in batch.get("items") or [] if i["status"] == "failed"]
    if not failed:  # still running: branches whose operations failed
        failed = sorted(
            {o["id"][len(prefix) :].split(".")[0] for o in inside if o.get("error")}, key=int
        )
    rows: list[dict[str, Any] | str] = []
    for index in failed[:SHOWN_FAILED]:
        rows.extend(o for o in inside if o["id"].startswith(f"{prefix}{index}."))
    hidden = len(inside) - sum(1 for r in rows if isinstance(r, dict))
    if hidden:
        more = (
            f"{len(failed) - SHOWN_FAILED} more failed branches, "
            if len(failed) > SHOWN_FAILED
            else ""
        )
        rows.append(f"… {more}{hidden} operations of batch {batch['id']} hidden (--all shows them)")
    return rows


def _runs_stacked(
    runs: list[dict[str, Any]],
    rows: list[list[str]],
    titles: list[str],
    widths: list[int],
    width: int,
) -> Text:
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    text = Text(line(titles) + "\n", style="bold")
    for run, row in zip(runs, rows, strict=True):
        text.append(row[0].ljust(widths[0]), style=STATUS_STYLE.get(run["status"], ""))
        text.append("  " + _rest(row, widths) + "\n")
        detail = _detail(run)
        if detail:
            room = max(20, width - 4)
            cut = detail if len(detail) <= room else detail[: room - 1] + "…"
            text.append(f"    {cut}\n", style="dim")
    text.rstrip()
    return text


def _rest(row: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(row[1:], widths[1:], strict=True)).rstrip()


def _steps_table(
    steps: list[dict[str, Any]], run: dict[str, Any] | None = None, *, expand: bool = False
) -> Table:
    """Operations in id order, nested by depth; big batches collapsed (see
    `_visible_steps`). `run` (its status and end) closes the waits a finished run
    left open."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("#", no_wrap=True)
    table.add_column("KIND", no_wrap=True)
    table.add_column("NAME", no_wrap=True)
    table.add_column("STARTED", no_wrap=True)
    table.add_column("TOOK", no_wrap=True)
    table.add_column("OUTCOME", overflow="fold")
    opened: set[str] = set()
    for s in _visible_steps(steps, expand):
        if isinstance(s, str):
            table.add_row("", "", Text(s, style="dim"), "", "", "")
            continue
        for scope in _task_scopes(s["id"]):
            if scope not in opened:  # the API lists a task scope's operations together
                opened.add(scope)
                table.add_row(
                    "  " * _depth(scope) + scope.rpartition(".")[2],
                    Text("task", style="dim"),
                    Text("asyncio task (gather, TaskGroup, create_task)", style="dim"),
                    "",
                    "",
                    "",
                )
        attempts = len(s.get("attempts") or [])
        outcome = _outcome(s, run) + (f"  ({attempts} attempts)" if attempts > 1 else "")
        failed = any(i["status"] == "failed" for i in s.get("items") or [])
        style = "red" if (s.get("error") and not s.get("retry_at")) or failed else ""
        table.add_row(
            "  " * _depth(s["id"]) + s["id"],
            s["kind"],
            s["name"],
            _local(s.get("started_at"))[11:],
            _took(s, run),
            Text(outcome, style=style),
        )
    return table


def _depth(op_id: str) -> int:
    """How deep an id nests: its parts, less one, not counting a continued-as-new
    run's generation prefix (`~g`)."""
    return op_id.count(".") - (1 if op_id.startswith("~") else 0)


def _task_scopes(op_id: str) -> list[str]:
    """The task scopes (`t<k>` parts) an operation sits in, outermost first:
    "3.t0.t1.2" -> ["3.t0", "3.t0.t1"]."""
    parts = op_id.split(".")
    return [
        ".".join(parts[: i + 1])
        for i, part in enumerate(parts[:-1])
        if part.startswith("t") and part[1:].isdigit()
    ]


def _inbox_table(signals: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in ("SEQ", "SIGNAL", "SENT", "PAYLOAD"):
        table.add_column(title, no_wrap=title != "PAYLOAD", overflow="fold")
    for sig in signals:
        table.add_row(str(sig["seq"]), sig["name"], _ago(sig["sent_at"]), _compact(sig["payload"]))
    return table


def _print_lineage(run: dict[str, Any]) -> None:
    """Build, generation, redrives and fork origin, when there are any."""
    if run.get("build_id"):
        pinned = " (pinned: only its workers run it)" if run.get("pinned") else ""
        out.print(f"  build {run['build_id']}{pinned}")
    if run.get("generation"):
        out.print(f"  generation {run['generation']} (continued as new)")
    for earlier in run.get("earlier_outcomes") or []:
        error = earlier.get("error") or {}
        out.print(
            f"  redriven after {earlier['status']} {_local(_iso(earlier['ended_at']))}"
            + (f": {error.get('type')}: {error.get('message')}" if error else "")
        )
    if run.get("forked_from"):
        origin = run["forked_from"]
        out.print(f"  forked from {origin['id']} at operation {origin['operation']}")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat()


def _print_run(
    run: dict[str, Any], *, traceback: bool = True, steps: list[dict[str, Any]] | None = None
) -> None:
    head = Text.assemble((run["name"], "bold"), "  ", _status(run["status"]), "  ", run["id"])
    out.print(head)
    if run["status"] in TERMINAL:
        took = f"took {_duration(run)}"
    elif run["status"] == "pending" and not run["attempt"]:
        took = f"pending for {_duration(run)}, not claimed by a worker yet"
    else:
        took = f"{run['status']}, {_duration(run)} since it was created"
    out.print(
        f"  created {_local(run['created_at'])} ({_ago(run['created_at'])}), "
        f"{took}, worker claims {run['attempt']}"
    )
    if run["status"] == "waiting":
        timeout = f", times out {_until(run['wake_at'])}" if run.get("wake_at") else ""
        out.print(f"  waiting for {_waits(run, steps)}{timeout}")
    elif run["status"] == "sleeping" and run.get("wake_at"):
        out.print(f"  sleeping until {_local(run['wake_at'])} ({_until(run['wake_at'])})")
    if run.get("deadline_at"):
        out.print(f"  execution deadline {_local(run['deadline_at'])}")
    if run.get("cancel_requested"):
        out.print(f"  cancel requested: {run['cancel_requested']}")
    if run.get("parent_id"):
        out.print(f"  child of run {run['parent_id']} (operation {run.get('parent_operation')})")
    _print_lineage(run)
    if run.get("stranded"):
        out.print(
            Text(
                f"  stranded: no live worker of build {run.get('build_id')} for a while "
                f"(`orchestrator migrate {run['id']} --to BUILD --module MODULE`)",
                style="yellow",
            )
        )
    if run.get("unserved"):
        out.print(
            Text(
                f"  no live worker serves {run['name']!r} (see `orchestrator workers`)",
                style="yellow",
            )
        )
    out.print(f"input:  {_shown(run, 'input')}", soft_wrap=True)
    if run["status"] == "completed":
        out.print(f"output: {_shown(run, 'output')}", soft_wrap=True)
    if run.get("error"):
        error = run["error"]
        out.print(Text(f"error:  {error['type']}: {error['message']}", style="red"), soft_wrap=True)
        if traceback and error.get("traceback"):
            out.print(Text(error["traceback"].rstrip(), style="dim"), soft_wrap=True)


# --- the API from the shell ---------------------------------------------------------------------


def _workers_table(workers: list[dict[str, Any]]) -> Table:
    builds = any(w.get("build_id") for w in workers)  # shown when workers declare build ids
    table = Table("id", "host", "serves", "queues", *(["build"] if builds else []), "busy")
    table.add_column("last seen")
    table.add_column("live")
    for w in workers:
        seen = datetime.fromtimestamp(w["last_seen"] / 1000).strftime("%H:%M:%S")
        busy = f"{w['busy']}/{w['concurrency']}"
        live = "yes" if w["live"] else "no"
        queues = ", ".join(w.get("task_queues") or ["default"])
        build = [w.get("build_id") or "-"] if builds else []
        table.add_row(w["id"], w["host"], ", ".join(w["names"]), queues, *build, busy, seen, live)
    return table
