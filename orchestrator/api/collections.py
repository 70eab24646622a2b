"""The routes of a run's collections, a page at a time: its records
(`GET /workflows/{id}/steps`), its inbox (`.../signals`) and its whole history
(`.../history`). Each takes `?limit=` (1 to 1000, 100 by default) and
`?cursor=` (a previous page's `next`), and answers `next`: the cursor of the
following page, or null after the last. A page is also cut by bytes
(`pages.PAGE_BYTES`), so it may hold fewer than `limit` items while `next` is
not null. Pages follow the store's key order; within a page, records are in
the order the code created them and signals in arrival order (a client that
wants one order over every page sorts them again, as `Client` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from .. import safejson
from ..model import MAX_GENERATION, MAX_INBOX_BYTES, MAX_INBOX_SIGNALS, Signal
from ..step_order import display_order
from .models import run_view, signal_view, step_view
from .pages import PAGE_BYTES, encode_cursor, page_query, sent_size, take
from .service import Service

HISTORY_FORMAT = "orchestrator.history/1"


def register(
    app: APIGatewayHttpResolver,
    service: Callable[[], Service],
    path_param: Callable[[str], str],
) -> None:
    def query() -> dict[str, str]:
        return dict(app.current_event.query_string_parameters or {})

    @app.get("/workflows/<workflow_id>/steps")
    def get_steps(workflow_id: str) -> dict[str, Any]:
        workflow_id = path_param(workflow_id)
        q = query()
        limit, start = page_query(q, "steps", allowed=("generation",))
        given = q.get("generation")
        generation = (
            None
            if given is None
            else safejson.int_param(given, what="generation", lo=0, hi=MAX_GENERATION)
        )
        svc = service()
        _, records = svc.read_steps(workflow_id, generation, start, batch=limit + 1)
        values = svc.values
        page, after = take(records, lambda s: step_view(s, workflow_id, values=values), limit=limit)
        return {
            "workflow_id": workflow_id,
            "steps": display_order([view for _, view in page]),
            "next": None if after is None else encode_cursor("steps", after),
        }

    @app.get("/workflows/<workflow_id>/signals")
    def inbox(workflow_id: str) -> dict[str, Any]:
        workflow_id = path_param(workflow_id)
        limit, start = page_query(query(), "signals")
        run, records = service().read_inbox(workflow_id, start, batch=limit + 1)
        page, after = take(records, signal_view, limit=limit)
        return {
            "workflow_id": workflow_id,
            "signals": sorted((view for _, view in page), key=lambda v: v["seq"]),
            "next": None if after is None else encode_cursor("signals", after),
            # How full the inbox is, against its limits (429 past them).
            "inbox": {
                "signals": run.inbox_count,
                "bytes": run.inbox_bytes,
                "max_signals": MAX_INBOX_SIGNALS,
                "max_bytes": MAX_INBOX_BYTES,
            },
        }

    @app.get("/workflows/<workflow_id>/history")
    def history(workflow_id: str) -> dict[str, Any]:
        """The run (on the first page only: `workflow` is null on the others),
        then its current generation's records, then every signal it got."""
        workflow_id = path_param(workflow_id)
        q = query()
        limit, start = page_query(q, "history")
        svc = service()
        run, records = svc.read_history(workflow_id, start, batch=limit + 1)
        values = svc.values
        workflow = None if q.get("cursor") else run_view(run, values=values)
        budget = PAGE_BYTES - (sent_size(workflow) if workflow is not None else 0)

        def render(rec: Any) -> dict[str, Any]:  # a StepRecord or a Signal
            if isinstance(rec, Signal):
                return {**signal_view(rec), "consumed": rec.consumed}
            return step_view(rec, workflow_id, values=values)

        # With the run in it, the first page may hold no record: the next one will.
        page, after = take(
            records,
            render,
            limit=limit,
            budget=max(budget, 0),
            start=start if workflow is not None else None,
        )
        return {
            "format": HISTORY_FORMAT,
            "workflow": workflow,
            "steps": [view for rec, view in page if not isinstance(rec, Signal)],
            "signals": sorted(
                (view for rec, view in page if isinstance(rec, Signal)), key=lambda v: v["seq"]
            ),
            "next": None if after is None else encode_cursor("history", after),
        }


__all__ = ["HISTORY_FORMAT", "register"]
