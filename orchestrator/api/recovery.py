"""Routes that reopen finished runs, `POST /workflows/{id}/redrive` and
`POST /workflows/{id}/fork` (orchestrator/store/recovery.py decides and writes;
these validate, write, then dispatch like a start), and the one that moves a
pinned run to another build, `POST /workflows/{id}/migrate`
(orchestrator/store/pinning.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..dispatch import missing_queue_message
from ..errors import BadInputError, ConflictError
from ..model import (
    BUILD_ID_HELP,
    BUILD_ID_RE,
    MAX_INPUT_BYTES,
    STEP_NAME_RE,
    WORKFLOW_ID_RE,
    Run,
    Status,
)
from ..store import pinning, recovery
from ..store.codec import encode_json
from .models import run_view
from .service import Service, _check_id


class RedriveRequest(BaseModel):
    """A redrive takes no options: send {} (every POST is application/json)."""

    model_config = ConfigDict(extra="forbid")


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_operation: str = Field(description="operation id: the records before it are kept")
    input: Any = None  # replaces the original's input when present (null included)
    id: str | None = None

    @field_validator("from_operation")
    @classmethod
    def _op(cls, v: str) -> str:
        if not STEP_NAME_RE.fullmatch(v) or len(v) > 100:
            raise ValueError("must be an operation id such as 3 or 3.1.0")
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not WORKFLOW_ID_RE.fullmatch(v):
            raise ValueError("is not a valid workflow id")
        return v


class MigrateRequest(BaseModel):
    """Move a pinned run to another build. `attempt`: the run's attempt (epoch)
    the caller replay-checked; refused (409) if the run moved on since."""

    model_config = ConfigDict(extra="forbid")

    to_build: str = Field(description="the build id whose workers run it from now on")
    attempt: int | None = Field(default=None, ge=0, le=2**53)

    @field_validator("to_build")
    @classmethod
    def _build(cls, v: str) -> str:
        if not BUILD_ID_RE.fullmatch(v):
            raise ValueError(BUILD_ID_HELP)
        return v


def _path(raw: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadInputError(f"{raw!r} is not valid percent-encoded UTF-8") from None


def redrive(service: Service, workflow_id: str) -> Run:
    _check_id(workflow_id)
    run = recovery.redrive(
        service.store.ddb,
        service.settings.table,
        service.clock,
        workflow_id,
        grace_ms=service.settings.sweep_grace_ms,
    )
    # A lost send: the sweeper's due pass sends it after the grace.
    service._send(run.id, "redrive", run.route)
    return run


def fork(service: Service, workflow_id: str, req: ForkRequest, *, replace_input: bool) -> Run:
    _check_id(workflow_id)
    text = encode_json(req.input, what="input", limit=MAX_INPUT_BYTES) if replace_input else None
    run = recovery.fork(
        service.store.ddb,
        service.settings.table,
        service.clock,
        workflow_id,
        from_operation=req.from_operation,
        input_text=text,
        new_id=req.id,
    )
    service._send(run.id, "start")  # a new run: the sweeper's walk repairs a lost send
    return run


def migrate(service: Service, workflow_id: str, req: MigrateRequest) -> tuple[Run, bool]:
    """(the run, moved). The new build's queue must exist (a worker of that build
    has started, or the stack declares the build): a run moved to a build that
    nothing serves would only wait."""
    _check_id(workflow_id)
    key = f"{service.store.get(workflow_id).task_queue or 'default'}@{req.to_build}"
    if not service.dispatcher.queue_exists(key):
        raise ConflictError(missing_queue_message(key, service.settings.queue_url_for(key)))
    _, run, moved = pinning.migrate(
        service.store.ddb,
        service.settings.table,
        service.clock,
        workflow_id,
        req.to_build,
        expected_epoch=req.attempt,
    )
    if moved:
        _wake_on(service, run)
    return run, moved


def _wake_on(service: Service, run: Run) -> None:
    """After the write, the run's way forward goes to the new build's queue. A run
    that can be claimed now gets a message now. A parked run's wake-up was sent
    toward the old build's queue: it gets a message delayed by the time left (at
    most 15 minutes; a new build's worker that receives it early keeps it hidden
    until the wake time if that is at most 15 minutes away, as for any early
    timer). A wake time further away is the sweeper's: the run is due in `by_due`
    at wake + grace, and the due pass sends it to its route. The old schedule is
    left alone (the API may not create schedules); if it fires into the old
    build's queue while a worker of that build lives, that worker forwards it.
    A run waiting for a signal without a timeout needs nothing: the signal
    routes by the run."""
    now = service.clock.now_ms()
    parked = run.status in (Status.SLEEPING, Status.WAITING)
    if parked and run.wake_at is None:
        return
    delay = 0
    if parked and run.wake_at is not None and run.wake_at > now:
        delay = min(-(-(run.wake_at - now) // 1000), 900)
    service._send(run.id, "migrate", run.route, delay_s=delay)


def add_routes(
    app: APIGatewayHttpResolver, service: Callable[[], Service], raw_body: Callable[..., Any]
) -> None:
    def reply(status: int, run: Run) -> Response[Any]:
        return Response(
            status_code=status,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps(run_view(run)),
        )

    @app.post("/workflows/<workflow_id>/redrive")
    def redrive_route(workflow_id: str) -> Response[Any]:
        RedriveRequest.model_validate(raw_body(optional=True))  # JSON only: no cross-site POST
        return reply(202, redrive(service(), _path(workflow_id)))

    @app.post("/workflows/<workflow_id>/migrate")
    def migrate_route(workflow_id: str) -> Response[Any]:
        workflow_id = _path(workflow_id)
        req = MigrateRequest.model_validate(raw_body())
        run, moved = migrate(service(), workflow_id, req)
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps({**run_view(run), "outcome": "migrated" if moved else "already_there"}),
        )

    @app.post("/workflows/<workflow_id>/fork")
    def fork_route(workflow_id: str) -> Response[Any]:
        workflow_id = _path(workflow_id)
        data = raw_body()
        req = ForkRequest.model_validate(data)
        return reply(201, fork(service(), workflow_id, req, replace_input="input" in data))
