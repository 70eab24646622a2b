"""Jobs: requests whose work has no bound (a bulk operation over every run a
filter matches, a backfill of thousands of ticks) done in bounded pages.

The request that asks for one creates the job item already held by itself,
works pages for up to REQUEST_BUDGET_S, and answers 200 with the outcome when
the job ended within that, or 202 with the job's progress. The sweeper's jobs
pass goes on with every running job nobody holds, for up to SWEEP_BUDGET_S per
sweep, until it ends. A page is recorded by one write conditioned on the
version the advancer read (`store/jobs.py`), so two advancers never both record
one; an advancer that dies mid-page leaves the job held until its lease runs
out (JOB_LEASE_MS), and the next advancer does that page again. A page's
actions are each idempotent (a run cancelled twice answers "already ended" the
second time; a tick's run has a deterministic id), so a page done twice changes
nothing twice.

    GET  /jobs                  newest first: ?limit=1..100&cursor=
    GET  /jobs/{id}             one job: status, phase, progress, outcome
    POST /jobs/{id}/cancel      stop a running job after its current page
"""

from __future__ import annotations

import builtins
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from pydantic import BaseModel, ConfigDict

from .. import safejson
from ..errors import BadInputError, ConflictError, NotFoundError, TooManyJobsError
from ..store.jobs import Job, JobStore
from .service import Service

log = logging.getLogger(__name__)

MAX_RUNNING_JOBS = 10  # at once per deployment; the next one is refused (429)
JOB_LEASE_MS = 120_000  # an advancer holds a job this long past its last page
REQUEST_BUDGET_S = 4.0  # a request's own pages (the API function's timeout is 10 s)
SWEEP_BUDGET_S = 8.0  # the sweeper's jobs pass, over every due job
MAX_JOB_ERRORS = 5  # pages in a row that raised before the job is failed
DUE_JOBS_PER_SWEEP = 10
MAX_LIST_LIMIT = 100

# A kind's page: the job as read -> the job after one more bounded page of work.
Page = Callable[[Service, Job], Job]


class JobCancelRequest(BaseModel):
    """A job's cancel takes no options: send {} (every POST is application/json)."""

    model_config = ConfigDict(extra="forbid")


def new_job_id(now: int) -> str:
    return f"{now:013d}-{secrets.token_hex(4)}"


class JobService:
    def __init__(self, runs: Service, store: JobStore, pages: dict[str, Page]) -> None:
        self.runs = runs
        self.store = store
        self.pages = pages

    @property
    def _now(self) -> int:
        return self.runs.clock.now_ms()

    # --- starting -------------------------------------------------------------------
    def start(self, kind: str, request: dict[str, Any], *, phase: str) -> Job:
        """Create a job held by the caller, work it for REQUEST_BUDGET_S, and
        return it (ended, or running with the sweeper to go on)."""
        if kind not in self.pages:
            raise BadInputError(f"unknown job kind {kind!r}")
        if self.store.running_count(MAX_RUNNING_JOBS) >= MAX_RUNNING_JOBS:
            raise TooManyJobsError(
                f"{MAX_RUNNING_JOBS} jobs are running, the most one deployment runs at once; "
                "retry once one has ended (GET /jobs), or cancel one"
            )
        now = self._now
        job = Job(
            id=new_job_id(now),
            kind=kind,
            request=request,
            created_at=now,
            updated_at=now,
            phase=phase,
            lease_until=now + JOB_LEASE_MS,
        )
        self.store.create(job, now)
        return self._work(job, time.monotonic() + REQUEST_BUDGET_S)

    # --- advancing ------------------------------------------------------------------
    def advance(self, job_id: str, budget_s: float) -> Job:
        """Take a running job nobody holds and work it for up to `budget_s`."""
        job = self.store.get(job_id)
        now = self._now
        if job.ended or (job.lease_until is not None and job.lease_until > now):
            return job
        held = self.store.save(job, replace(job, lease_until=now + JOB_LEASE_MS), now)
        if held is None:
            return self.store.get(job_id)  # another advancer took it first
        return self._work(held, time.monotonic() + budget_s)

    def advance_due(self, budget_s: float = SWEEP_BUDGET_S) -> builtins.list[Job]:
        """The sweeper's pass: every due job, while the budget lasts."""
        deadline = time.monotonic() + budget_s
        worked = []
        for job_id in self.store.due(self._now, DUE_JOBS_PER_SWEEP):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                worked.append(self.advance(job_id, left))
            except Exception:
                log.exception("advancing job %s failed; the next sweep retries", job_id)
        return worked

    def _work(self, job: Job, deadline: float) -> Job:
        """Pages of a job the caller holds, until it ends, the deadline passes, a
        page raises, or somebody else writes it; then let go of it."""
        page = self.pages[job.kind]
        while True:
            stop = False
            try:
                after = replace(page(self.runs, job), errors=0)
            except (BadInputError, NotFoundError, ConflictError) as e:
                # What the job works on is gone or changed (a deleted schedule): it
                # cannot go on, and trying again would not help.
                after = replace(job, status="failed", message=e.message)
            except Exception as e:
                log.exception("a page of job %s raised; it is tried again", job.id)
                errors = job.errors + 1
                after = replace(job, errors=errors, message=f"{type(e).__name__}: {e}")
                if errors >= MAX_JOB_ERRORS:
                    after = replace(after, status="failed")
                stop = True
            now = self._now
            if after.ended:
                after = replace(after, lease_until=None, finished_at=now)
            else:
                after = replace(after, lease_until=now + JOB_LEASE_MS)
            saved = self.store.save(job, after, now)
            if saved is None:
                return self.store.get(job.id)  # cancelled, or taken over: not ours now
            job = saved
            if job.ended or stop or time.monotonic() >= deadline:
                break
        if job.ended:
            return job
        now = self._now
        released = self.store.save(job, replace(job, lease_until=None), now)
        return released if released is not None else self.store.get(job.id)

    # --- reading and cancelling -----------------------------------------------------
    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def list(self, *, limit: int, cursor: str | None) -> tuple[builtins.list[Job], str | None]:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadInputError(f"limit must be 1..{MAX_LIST_LIMIT}")
        return self.store.list(limit=limit, cursor=cursor)

    def cancel(self, job_id: str) -> tuple[Job, str]:
        """Stop a running job: the page in flight may finish, no page after it
        starts. (job, "cancelled" | "already_ended")."""
        for _ in range(20):
            job = self.store.get(job_id)
            if job.ended:
                return job, "already_ended"
            now = self._now
            stopped = replace(
                job,
                status="cancelled",
                lease_until=None,
                finished_at=now,
                message="cancelled by request",
            )
            saved = self.store.save(job, stopped, now)
            if saved is not None:
                return saved, "cancelled"
        raise ConflictError(f"job {job_id} kept changing; retry the cancel")


def job_view(job: Job, now: int) -> dict[str, Any]:
    """A job as the API shows it. `result` holds what the job's own route answers
    when it ends within its request (a bulk reply, a backfill reply)."""
    view: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "phase": job.phase,
        "request": job.request,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "progress": job.state.get("progress", {}),
        "result": job.state.get("result", {}),
    }
    if job.finished_at is not None:
        view["finished_at"] = job.finished_at
    if job.message is not None:
        view["message"] = job.message
    if "refusal" in job.state:
        view["refusal"] = job.state["refusal"]  # "count" (409) or "limit" (400)
    if not job.ended:
        view["held"] = job.lease_until is not None and job.lease_until > now
    return view


def json_response(status: int, value: Any, *, location: str | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(value),
        headers={"Location": location} if location else None,
    )


def job_reply(job: Job, now: int, head: dict[str, Any]) -> Response[Any]:
    """What a route that starts a job answers: its outcome when the job ended
    within the request (200, with `status` saying how), else 202 with the job's
    progress and `Location: /jobs/{id}`. `head` goes first (the route's fields)."""
    reply = {**head, **job.state.get("result", {}), "job_id": job.id, "status": job.status}
    if job.message is not None:
        reply["message"] = job.message
    if job.ended:
        return json_response(200, reply)
    return json_response(202, {**reply, "job": job_view(job, now)}, location=f"/jobs/{job.id}")


def register(
    app: APIGatewayHttpResolver, service: Callable[[], Service], body: Callable[..., Any]
) -> None:
    from .app import path_param

    @app.get("/jobs")
    def list_jobs() -> dict[str, Any]:
        q = app.current_event.query_string_parameters or {}
        unknown = set(q) - {"limit", "cursor"}
        if unknown:
            raise BadInputError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        limit = safejson.int_param(q.get("limit", "20"), what="limit", lo=1, hi=MAX_LIST_LIMIT)
        svc = service()
        jobs, cursor = svc.jobs.list(limit=limit, cursor=q.get("cursor"))
        now = svc.clock.now_ms()
        return {"jobs": [job_view(job, now) for job in jobs], "cursor": cursor}

    @app.get("/jobs/<job_id>")
    def get_job(job_id: str) -> dict[str, Any]:
        svc = service()
        return job_view(svc.jobs.get(path_param(job_id)), svc.clock.now_ms())

    @app.post("/jobs/<job_id>/cancel")
    def cancel_job(job_id: str) -> Response[Any]:
        body(JobCancelRequest)
        svc = service()
        job, outcome = svc.jobs.cancel(path_param(job_id))
        return json_response(200, {**job_view(job, svc.clock.now_ms()), "outcome": outcome})
