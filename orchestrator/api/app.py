"""Routes, and the one table that maps errors to HTTP statuses.

Every error is `{"error": {"code": ..., "message": ...}}`. A request that is
refused writes nothing: validation happens before the first write.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from botocore.exceptions import ClientError
from pydantic import ValidationError

from ..errors import BadInputError, NotFoundError, OrchestratorError, PayloadTooLargeError
from . import queue_routes, schedule_routes
from .models import CancelRequest, SignalRequest, StartRequest, run_view, step_view
from .service import Service

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 512 * 1024
_THROTTLES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}

ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("GET", re.compile(r"^/$")),
    ("GET", re.compile(r"^/dashboard/[^/]+$")),
    ("GET", re.compile(r"^/workers/?$")),
    ("GET", re.compile(r"^/workflows/?$")),
    ("POST", re.compile(r"^/workflows/?$")),
    ("GET", re.compile(r"^/workflows/[^/]+/?$")),
    ("GET", re.compile(r"^/workflows/[^/]+/steps/?$")),
    ("POST", re.compile(r"^/workflows/[^/]+/signals/?$")),
    ("POST", re.compile(r"^/workflows/[^/]+/cancel/?$")),
    *schedule_routes.ROUTES,
    *queue_routes.ROUTES,
]


def error_response(status: int, code: str, message: str) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"error": {"code": code, "message": message}}),
    )


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def build_app(service: Callable[[], Service]) -> APIGatewayHttpResolver:
    """The resolver; `service` is called per request (lazily built in Lambda,
    injected by the local stack and tests)."""
    app = APIGatewayHttpResolver(strip_prefixes=["/api"])

    def body(
        model: type[StartRequest] | type[SignalRequest] | type[CancelRequest],
        *,
        optional: bool = False,
    ) -> Any:
        raw = app.current_event.decoded_body or ""
        if len(raw.encode()) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"request body is over {MAX_BODY_BYTES} bytes")
        if not raw.strip():
            if optional:
                return model.model_validate({})
            raise BadInputError("request body is empty; send a JSON object")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadInputError(f"request body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise BadInputError("request body must be a JSON object")
        return model.model_validate(data)

    @app.get("/")
    def dashboard() -> Response[Any]:
        from ..dashboard import page

        return Response(status_code=200, content_type="text/html; charset=utf-8", body=page())

    @app.get("/dashboard/<file>")
    def dashboard_asset(file: str) -> Response[Any]:
        from ..dashboard import asset

        found = asset(file)
        if found is None:
            raise NotFoundError(f"no dashboard file {file!r}")
        content_type, text = found
        return Response(status_code=200, content_type=content_type, body=text)

    @app.post("/workflows")
    def start() -> Response[Any]:
        req = body(StartRequest)
        run, created = service().start(
            req.name,
            req.input,
            req.id,
            execution_timeout_s=req.execution_timeout_seconds,
            traceparent=app.current_event.headers.get("traceparent"),
            task_queue=req.task_queue,
        )
        return Response(
            status_code=201 if created else 200,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps(run_view(run)),
        )

    @app.get("/workflows")
    def list_runs() -> dict[str, Any]:
        q = app.current_event.query_string_parameters or {}
        unknown = set(q) - {"status", "name", "limit", "cursor"}
        if unknown:
            raise BadInputError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise BadInputError("limit must be an integer") from None
        page = service().list(
            status=q.get("status"), name=q.get("name"), limit=limit, cursor=q.get("cursor")
        )
        served = service().served_names()
        return {"workflows": [run_view(r, served) for r in page.runs], "next_cursor": page.cursor}

    @app.get("/workflows/<workflow_id>")
    def get_run(workflow_id: str) -> dict[str, Any]:
        run = service().get(workflow_id)
        return run_view(run, None if run.status.terminal else service().served_names())

    @app.get("/workers")
    def workers() -> dict[str, Any]:
        q = app.current_event.query_string_parameters or {}
        everyone = q.get("all", "").lower() in ("1", "true", "yes")
        return {
            "workers": [w.as_dict() | {"live": live} for w, live in service().workers(everyone)]
        }

    @app.get("/workflows/<workflow_id>/steps")
    def get_steps(workflow_id: str) -> dict[str, Any]:
        return {
            "workflow_id": workflow_id,
            "steps": [step_view(s) for s in service().steps(workflow_id)],
        }

    @app.post("/workflows/<workflow_id>/signals")
    def signal(workflow_id: str) -> Response[Any]:
        req = body(SignalRequest)
        sig, woke = service().signal(workflow_id, req.name, req.payload)
        return Response(
            status_code=202,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps(
                {"workflow_id": workflow_id, "signal": sig.name, "seq": sig.seq, "woke": woke}
            ),
        )

    @app.post("/workflows/<workflow_id>/cancel")
    def cancel(workflow_id: str) -> Response[Any]:
        req = body(CancelRequest, optional=True)
        run, outcome = service().cancel(workflow_id, req.reason)
        messages = {
            "cancelled": "the run is cancelled",
            "requested": "the run is running: it is cancelled at its next durable call",
            "already_requested": "a cancel was already requested; the run is still running",
        }
        message = messages.get(outcome, f"nothing to do: the run is already {run.status.value}")
        return Response(
            status_code=202 if outcome in ("requested", "already_requested") else 200,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps({**run_view(run), "outcome": outcome, "message": message}),
        )

    schedule_routes.register(app, service)
    queue_routes.register(app, service)

    @app.exception_handler(OrchestratorError)
    def _domain(e: OrchestratorError) -> Response[Any]:
        return error_response(e.http_status, e.code, e.message)

    @app.exception_handler(ValidationError)
    def _invalid(e: ValidationError) -> Response[Any]:
        return error_response(400, "bad_input", _validation_message(e))

    @app.exception_handler(ClientError)
    def _aws(e: ClientError) -> Response[Any]:
        code = e.response.get("Error", {}).get("Code", "")
        if code in _THROTTLES:
            return error_response(503, "unavailable", f"the store is busy ({code}); retry")
        log.exception("AWS error")
        return error_response(500, "internal", "internal error")

    @app.not_found
    def _not_found(_: Exception) -> Response[Any]:
        path = app.current_event.path
        method = app.current_event.http_method
        for _m, pattern in ROUTES:
            if pattern.match(path.removeprefix("/api")):
                allowed = sorted({m for m, p in ROUTES if p.match(path.removeprefix("/api"))})
                return error_response(
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed on {path}; use {', '.join(allowed)}",
                )
        return error_response(404, "not_found", f"no route for {method} {path}")

    return app


__all__ = ["ROUTES", "NotFoundError", "build_app"]
