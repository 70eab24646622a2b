"""`POST /bulk/{action}`: cancel, terminate or redrive every run a filter
matches, a dry run first; done as a job (`api/jobs.py`).

    POST /bulk/cancel|terminate|redrive
         {"name"?, "status"?, "created_after"?, "created_before"?,
          "dry_run": true, "confirm_count"?, "reason"?}

Selection: the runs of the `by_created` listing (newest first) created before
the request and matching the filter, at most MAX_BULK_RUNS of them. Cancel and
terminate select unfinished runs; redrive selects runs in every status, and
refuses (per run, with the reason) the ones that are not failed, timed out or
cancelled, leaving them unchanged.

The job counts the selection a listing page at a time (phase "counting"). A dry
run (the default) ends there and changes no run. Acting needs `confirm_count`
equal to that count, so a selection that grew or shrank since the dry run is
refused before any run is touched. The job then walks the listing again (phase
"acting") and acts on each run by the same path as its single-run route, up to
ACT_THREADS runs at once. The outcome holds a count per outcome and the first
RESULTS_KEPT per-run results.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from ..errors import BadInputError, ConflictError, NotFoundError
from ..model import RECOVERY, Run
from ..store.jobs import Job
from . import recovery
from .jobs import job_reply
from .models import BulkRequest
from .service import Service

MAX_BULK_RUNS = 100_000  # runs one bulk job selects; narrow the filter for more
LIST_PAGE = 200  # runs of the listing per counting page (reads only)
ACT_PAGE = 50  # runs of the listing per acting page (some 3 requests per run acted on)
ACT_THREADS = 8  # runs acted on at once within a page
RESULTS_KEPT = 1000  # per-run results the job keeps (every outcome is counted)
SAMPLE = 20  # run ids the outcome shows
ACTIONS = ("cancel", "terminate", "redrive")


def _redrive_one(service: Service, run: Run) -> dict[str, Any]:
    # Judged first by the status the listing read, which costs no request for a
    # run that cannot be redriven; a run that passes is judged again by the
    # redrive's own consistent read and conditional write.
    if run.status not in RECOVERY["redrive"]:
        return {
            "id": run.id,
            "outcome": "refused",
            "reason": f"the run is {run.status.value}: only a failed, timed-out or "
            "cancelled run can be redriven",
        }
    try:
        recovery.redrive(service, run.id)
    except (ConflictError, NotFoundError) as e:
        return {"id": run.id, "outcome": "refused", "reason": e.message}
    return {"id": run.id, "outcome": "redriven"}


def _act(service: Service, action: str, reason: str | None, run: Run) -> dict[str, Any]:
    if action == "redrive":
        return _redrive_one(service, run)
    if action == "cancel":
        _, outcome = service.cancel(run.id, reason)
    else:
        _, outcome = service.terminate(run.id, reason)
    return {"id": run.id, "outcome": outcome}


def _selected(
    req: dict[str, Any], runs: list[Run], ended_since: int | None
) -> tuple[list[Run], bool]:
    """The runs of one listing page the job selects, and whether the listing has
    gone past the selection's oldest time (newest first: nothing further can match).

    Cancel and terminate select unfinished runs; when acting (`ended_since` is
    the job's start), also the runs that ended since the job started, so that a
    run ended by a page that was cut short (and done again) or that ended on its
    own meanwhile is answered `already_<status>` and counted, not left out."""
    found: list[Run] = []
    for run in runs:
        if run.created_at >= req["selected_before"]:
            continue
        after = req.get("created_after")
        if after is not None and run.created_at < after:
            return found, True
        ended_here = ended_since is not None and run.updated_at >= ended_since
        if req["action"] != "redrive" and run.status.terminal and not ended_here:
            continue
        found.append(run)
    return found, False


def page(service: Service, job: Job) -> Job:
    """One page of a bulk job: a listing page counted, or acted on."""
    req = job.request
    limit = LIST_PAGE if job.phase == "counting" else ACT_PAGE
    listing = service.list(
        status=req.get("status"), name=req.get("name"), limit=limit, cursor=job.cursor
    )
    runs, past = _selected(req, listing.runs, job.created_at if job.phase == "acting" else None)
    done = past or not listing.cursor
    progress = dict(job.state.get("progress", {}))
    result = dict(job.state.get("result", {}))
    progress["examined"] = progress.get("examined", 0) + len(listing.runs)
    if job.phase == "counting":
        count = result.get("count", 0) + len(runs)
        statuses = dict(result.get("statuses", {}))
        for run in runs:
            statuses[run.status.value] = statuses.get(run.status.value, 0) + 1
        sample = result.get("sample", []) + [run.id for run in runs]
        result.update(count=count, statuses=statuses, sample=sample[:SAMPLE], truncated=False)
        if count > MAX_BULK_RUNS:
            result.update(count=MAX_BULK_RUNS, truncated=True)
            done = True
        progress["matched"] = result["count"]
        state = {"progress": progress, "result": result}
        if not done:
            return replace(job, cursor=listing.cursor, state=state)
        if req["dry_run"]:
            return replace(job, status="completed", cursor=None, state=state)
        if result["truncated"]:
            return replace(
                job,
                status="refused",
                state={**state, "refusal": "limit"},
                message=f"more than {MAX_BULK_RUNS} runs match, the most one bulk job "
                "acts on: narrow the filter (created_after, created_before) and act in parts",
            )
        if req["confirm_count"] != count:
            return replace(
                job,
                status="refused",
                state={**state, "refusal": "count"},
                message=f"{count} runs match now, not {req['confirm_count']}: check with "
                "a dry run, then confirm with that count",
            )
        progress.update(acted=0, total=count)
        return replace(job, phase="acting", cursor=None, state=state)
    # Acting: each selected run of the page, by its single-run path.
    with ThreadPoolExecutor(max_workers=ACT_THREADS) as pool:
        done_here = list(
            pool.map(lambda run: _act(service, req["action"], req.get("reason"), run), runs)
        )
    outcomes = dict(result.get("outcomes", {}))
    for one in done_here:
        outcomes[one["outcome"]] = outcomes.get(one["outcome"], 0) + 1
    kept = result.get("results", [])
    kept = kept + done_here[: max(0, RESULTS_KEPT - len(kept))]
    progress["acted"] = progress.get("acted", 0) + len(done_here)
    result.update(outcomes=outcomes, results=kept, results_kept=RESULTS_KEPT)
    state = {"progress": progress, "result": result}
    if done:
        return replace(job, status="completed", cursor=None, state=state)
    return replace(job, cursor=listing.cursor, state=state)


def bulk(
    service: Service,
    action: str,
    *,
    name: str | None = None,
    status: str | None = None,
    created_after: int | None = None,
    created_before: int | None = None,
    dry_run: bool = True,
    confirm_count: int | None = None,
    reason: str | None = None,
) -> Job:
    """Start the bulk job (see the module doc) and return it after the request's
    own pages: ended, or running with the sweeper to go on."""
    if action not in ACTIONS:
        raise BadInputError(f"unknown bulk action {action!r}; one of: {', '.join(ACTIONS)}")
    if action == "redrive" and reason is not None:
        raise BadInputError("a redrive records no reason: leave reason out")
    if not dry_run and confirm_count is None:
        raise BadInputError("acting needs confirm_count: the count a dry run answered")
    service.list(status=status, name=name, limit=1, cursor=None)  # the filter, checked now
    now = service.clock.now_ms()
    request = {
        "action": action,
        "name": name,
        "status": status,
        "created_after": created_after,
        "created_before": created_before,
        "selected_before": now if created_before is None else min(created_before, now),
        "dry_run": dry_run,
        "confirm_count": confirm_count,
        "reason": reason,
    }
    return service.jobs.start("bulk", request, phase="counting")


def bulk_reply(job: Job, now: int) -> Response[Any]:
    """What `POST /bulk/{action}` answers: the outcome when the job ended within
    the request (200), its progress when it goes on (202), the refusal as the
    error it is (409 for a count that changed, 400 past MAX_BULK_RUNS)."""
    if job.status == "refused":
        if job.state.get("refusal") == "limit":
            raise BadInputError(job.message or "too many runs match")
        raise ConflictError(job.message or "the selection changed")
    req = job.request
    return job_reply(job, now, {"action": req["action"], "dry_run": req["dry_run"]})


def register(
    app: APIGatewayHttpResolver, service: Callable[[], Service], body: Callable[..., Any]
) -> None:
    from .app import path_param

    @app.post("/bulk/<action>")
    def bulk_route(action: str) -> Response[Any]:
        req = body(BulkRequest)

        def ms(value: Any) -> int | None:
            return None if value is None else int(value.timestamp() * 1000)

        svc = service()
        job = bulk(
            svc,
            path_param(action),
            name=req.name,
            status=req.status,
            created_after=ms(req.created_after),
            created_before=ms(req.created_before),
            dry_run=req.dry_run,
            confirm_count=req.confirm_count,
            reason=req.reason,
        )
        return bulk_reply(job, svc.clock.now_ms())
