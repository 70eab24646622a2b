"""`orchestrator jobs ...`: bulk operations and backfills, which the API does as
jobs in bounded pages (see orchestrator/api/jobs.py). Also `follow`, which the
`bulk` and `schedule backfill` commands use for a job that goes on past its
request. Registered on the main app by `orchestrator/cli/__init__.py`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from ..client import JOB_WAIT_S
from .common import FLAG, JsonFlag, _call, _client, _print_json, err
from .format import out

jobs_app = typer.Typer(
    help="Bulk operations and backfills: jobs the API does a page at a time.",
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(help="The job's id.", show_default=False, metavar="ID")]
NoWait = Annotated[
    bool,
    typer.Option(
        "--no-wait", help="Print the job and return if it goes on past the request.", metavar=FLAG
    ),
]


def follow(client: Any, reply: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
    """A job route's reply; one that goes on past its request is waited for (its
    final reply), unless `wait` is False (then the running job's reply)."""
    if reply.get("status") != "running":
        return reply
    job_id = reply["job_id"]
    if not wait:
        err.print(f"job {job_id} goes on: orchestrator jobs show {job_id} --wait", soft_wrap=True)
        return reply
    err.print(
        f"job {job_id} goes on past the request ({progress(reply['job'])}); waiting for it "
        "(Ctrl-C stops the waiting, not the job)",
        soft_wrap=True,
    )
    done: dict[str, Any] = _call(client.finish_job, reply, JOB_WAIT_S)
    return done


def progress(job: dict[str, Any]) -> str:
    """A job's progress in words."""
    p = job.get("progress", {})
    if job["kind"] == "backfill":
        return f"{p.get('ticks_done', 0)} of {p.get('total', '?')} ticks"
    if job.get("phase") == "acting":
        return f"{p.get('acted', 0)} of {p.get('total', '?')} runs acted on"
    return f"{p.get('examined', 0)} runs examined, {p.get('matched', 0)} match"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _what(job: dict[str, Any]) -> str:
    req = job["request"]
    if job["kind"] == "backfill":
        return f"backfill {req['schedule']} {req['start']} .. {req['end']}"
    filters = " ".join(f"{k}={req[k]}" for k in ("name", "status") if req.get(k) is not None)
    mode = "dry run" if req.get("dry_run") else req["action"]
    return f"bulk {req['action']} ({mode}) {filters}".rstrip()


@jobs_app.command("list")
def list_jobs(
    limit: Annotated[int, typer.Option(help="How many, newest first (1-100).")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The newest jobs: what each does, its status and progress."""
    page = _call(_client().jobs, limit=limit)
    if as_json:
        _print_json(page)
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("created (UTC)")
    table.add_column("what", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("progress", overflow="fold")
    for job in page["jobs"]:
        table.add_row(job["id"], _when(job["created_at"]), _what(job), job["status"], progress(job))
    out.print(table)


@jobs_app.command("show")
def show(
    job_id: JobId,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the job has ended.", metavar=FLAG)
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """One job: its status, progress and, once ended, its result."""
    client = _client()
    job = _call(client.wait_job, job_id) if wait else _call(client.job, job_id)
    if as_json:
        _print_json(job)
        return
    out.print(f"{job['id']}  {_what(job)}", markup=False, soft_wrap=True)
    out.print(f"status: {job['status']} ({progress(job)})", markup=False)
    if job.get("message"):
        out.print(job["message"], markup=False, soft_wrap=True)
    outcomes = job.get("result", {}).get("outcomes")
    if outcomes:
        out.print(", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())), markup=False)


@jobs_app.command("cancel")
def cancel(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Stop a running job after the page it is on. What it did stays done."""
    job = _call(_client().cancel_job, job_id)
    if as_json:
        _print_json(job)
        return
    said = "cancelled" if job["outcome"] == "cancelled" else f"had already ended ({job['status']})"
    out.print(f"job {job['id']} {said}: {progress(job)}", markup=False)
