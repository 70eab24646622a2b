"""Routes that reopen finished runs: `POST /workflows/{id}/redrive` and
`POST /workflows/{id}/fork` (orchestrator/store/recovery.py decides and writes;
these validate, write, then dispatch like a start)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BadInputError
from ..model import MAX_INPUT_BYTES, STEP_NAME_RE, WORKFLOW_ID_RE, Run
from ..store import recovery
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
        if not STEP_NAME_RE.match(v) or len(v) > 100:
            raise ValueError("must be an operation id such as 3 or 3.1.0")
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not WORKFLOW_ID_RE.match(v):
            raise ValueError("is not a valid workflow id")
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
    service._send(run.id, "redrive")  # lost: the sweeper's due pass sends it after the grace
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

    @app.post("/workflows/<workflow_id>/fork")
    def fork_route(workflow_id: str) -> Response[Any]:
        workflow_id = _path(workflow_id)
        data = raw_body()
        req = ForkRequest.model_validate(data)
        return reply(201, fork(service(), workflow_id, req, replace_input="input" in data))
