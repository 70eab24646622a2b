"""`POST /bulk/{action}`: cancel, terminate or redrive every run a filter
matches, a dry run first.

    POST /bulk/cancel|terminate|redrive
         {"name"?, "status"?, "created_after"?, "created_before"?,
          "dry_run": true, "confirm_count"?, "reason"?}

Selection: the runs of the `by_created` listing (newest first) that match the
filter, at most BULK_MAX of them. Cancel and terminate select unfinished runs;
redrive selects runs in every status, and refuses (per run, with the reason)
the ones that are not failed, timed out or cancelled, leaving them unchanged.

A dry run (the default) counts the selection and changes nothing. Acting needs
`confirm_count` equal to what the filter selects now, so a selection that grew
or shrank since the dry run is refused (409) before anything is written. Each
run is then acted on by the same path as its single-run route; the reply lists
each run's outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from ..errors import BadInputError, ConflictError, NotFoundError
from ..model import RECOVERY, Run
from . import recovery
from .models import BulkRequest
from .service import Service

BULK_MAX = 1000  # runs one bulk call acts on; narrow the filter for more
SAMPLE = 20  # run ids a dry run shows
ACTIONS = ("cancel", "terminate", "redrive")


def select(
    service: Service,
    *,
    name: str | None,
    status: str | None,
    created_after: int | None,
    created_before: int | None,
    unfinished_only: bool,
) -> tuple[list[Run], bool]:
    """Runs matching the filter, newest first, at most BULK_MAX (then True: there
    are more). Walks the `by_created` listing, so it reads every run created in
    the range, not only the matches."""
    found: list[Run] = []
    cursor: str | None = None
    while True:
        page = service.list(status=status, name=name, limit=200, cursor=cursor)
        for run in page.runs:
            if created_before is not None and run.created_at >= created_before:
                continue
            if created_after is not None and run.created_at < created_after:
                return found, False
            if unfinished_only and run.status.terminal:
                continue
            if len(found) == BULK_MAX:
                return found, True
            found.append(run)
        if not page.cursor:
            return found, False
        cursor = page.cursor


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
) -> dict[str, Any]:
    """See the module doc. The reply: action, dry_run, count, truncated, sample
    (the first run ids) and statuses (how many of each status the selection
    holds); when acting, also outcomes (a count per outcome) and results (one
    {"id", "outcome", "reason"?} per run, in selection order)."""
    if action not in ACTIONS:
        raise BadInputError(f"unknown bulk action {action!r}; one of: {', '.join(ACTIONS)}")
    if action == "redrive" and reason is not None:
        raise BadInputError("a redrive records no reason: leave reason out")
    runs, more = select(
        service,
        name=name,
        status=status,
        created_after=created_after,
        created_before=created_before,
        unfinished_only=action != "redrive",
    )
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run.status.value] = statuses.get(run.status.value, 0) + 1
    reply: dict[str, Any] = {
        "action": action,
        "dry_run": dry_run,
        "count": len(runs),
        "truncated": more,
        "sample": [run.id for run in runs[:SAMPLE]],
        "statuses": statuses,
    }
    if dry_run:
        return reply
    if confirm_count != len(runs):
        raise ConflictError(
            f"{len(runs)} runs match now, not {confirm_count}: check with a dry run, "
            f"then confirm with that count"
        )
    results: list[dict[str, Any]] = []
    for run in runs:
        if action == "redrive":
            results.append(_redrive_one(service, run))
            continue
        if action == "cancel":
            _, outcome = service.cancel(run.id, reason)
        else:
            _, outcome = service.terminate(run.id, reason)
        results.append({"id": run.id, "outcome": outcome})
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1
    return {**reply, "outcomes": outcomes, "results": results}


def register(
    app: APIGatewayHttpResolver, service: Callable[[], Service], body: Callable[..., Any]
) -> None:
    from .app import path_param

    @app.post("/bulk/<action>")
    def bulk_route(action: str) -> dict[str, Any]:
        req = body(BulkRequest)

        def ms(value: Any) -> int | None:
            return None if value is None else int(value.timestamp() * 1000)

        return bulk(
            service(),
            path_param(action),
            name=req.name,
            status=req.status,
            created_after=ms(req.created_after),
            created_before=ms(req.created_before),
            dry_run=req.dry_run,
            confirm_count=req.confirm_count,
            reason=req.reason,
        )
