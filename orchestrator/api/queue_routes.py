"""The `/queues` routes: each task queue's depth, runs in flight and limits, and
flow control changed at run time (`orchestrator queue set`).

    GET  /queues                 {"queues": [{"name", "depth", "in_flight", "max_concurrency", ...,
                                  "oldest_wait_seconds", "oldest_waiting_run"}]}
    POST /queues/{name}          {"max_concurrency"?, "rate_limit"?, "rate_period_seconds"?}

A limit left out (or null) is removed. See `orchestrator/store/flow.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadInputError, NotFoundError
from ..model import Status
from ..store import flow as f
from .service import Service


class LimitsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    rate_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    rate_period_seconds: float | None = Field(default=None, gt=0, le=86_400)


def stored_limits(req: LimitsRequest) -> dict[str, int | None]:
    """The limits as the queue's item keeps them (`flow.set_limits` keywords);
    BadInputError for a period without a rate. A rate without a period is per
    second. The API and the CDK construct's `task_queues` both use it."""
    if req.rate_period_seconds is not None and req.rate_limit is None:
        raise BadInputError("rate_period_seconds needs a rate_limit")
    period = None
    if req.rate_limit is not None:
        period = int((req.rate_period_seconds or 1) * 1000)
    return {
        "max_concurrency": req.max_concurrency,
        "rate_limit": req.rate_limit,
        "rate_period_ms": period,
    }


def queue_view(service: Service, name: str) -> dict[str, Any]:
    resp = service.store.ddb.get_item(
        TableName=service.settings.table, Key=f.flow_key(name), ConsistentRead=True
    )
    state = f.flow_from_item(name, resp.get("Item"))
    attrs: dict[str, str] = {}
    sqs = getattr(service.dispatcher, "_sqs", None)
    if sqs is not None:
        try:
            attrs = sqs.get_queue_attributes(
                QueueUrl=service.settings.queue_url_for(name),
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
        except Exception:
            attrs = {}
    oldest = state.oldest_wait if state.limited else None
    if oldest is not None and not _still_waits(service, name, *oldest):
        oldest = None
    visible = int(attrs.get("ApproximateNumberOfMessages", 0))
    delayed = int(attrs.get("ApproximateNumberOfMessagesDelayed", 0))
    return {
        "name": name,
        "depth": visible + delayed,  # runnable messages waiting (delayed: timers, waits)
        "in_flight": state.in_flight
        if state.max_concurrency is not None
        else int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "max_concurrency": state.max_concurrency,
        "rate_limit": state.rate_limit,
        "rate_period_seconds": None
        if state.rate_period_ms is None
        else state.rate_period_ms / 1000,
        # The oldest run refused a slot and still waiting, as the workers recorded
        # it on the same item (no extra read here); null on a queue without limits
        # or with nobody waiting.
        "oldest_wait_seconds": None
        if oldest is None
        else max(0.0, (service.clock.now_ms() - oldest[1]) / 1000),
        "oldest_waiting_run": None if oldest is None else oldest[0],
    }


def _still_waits(service: Service, name: str, run_id: str, since: int) -> bool:
    """The recorded oldest waiter is cleared by its own acquire; a late record
    (a duplicate message's handler refused after the run got its slot) would
    outlive it. One read checks the run; a run no longer waiting is cleared, with
    a write conditioned on the record being unchanged, so the next refused
    waiter records itself."""
    try:
        if service.store.get(run_id).status in (Status.PENDING, Status.SLEEPING, Status.WAITING):
            return True
    except NotFoundError:
        pass
    with contextlib.suppress(ClientError):
        service.store.ddb.update_item(**f.clear_waiting(service.settings.table, name, run_id))
    return False


def register(
    app: APIGatewayHttpResolver, service: Callable[[], Service], body: Callable[..., Any]
) -> None:
    """`body` is the application's one body reader (JSON only, hardened decoding)."""

    @app.get("/queues")
    def list_queues() -> dict[str, Any]:
        s = service()
        return {"queues": [queue_view(s, q) for q in s.settings.task_queues]}

    @app.post("/queues/<name>")
    def set_limits(name: str) -> dict[str, Any]:
        s = service()
        if name not in s.settings.task_queues:
            raise NotFoundError(
                f"no task queue {name!r}; this deployment has {', '.join(s.settings.task_queues)}"
            )
        req = body(LimitsRequest, optional=True)
        s.store.ddb.update_item(
            **f.set_limits(s.settings.table, name, **stored_limits(req), now=s.clock.now_ms())
        )
        return queue_view(s, name)
