"""The callback routes: an outside system completes (or heartbeats) a callback
a workflow created, by its token.

`POST /callbacks/{id}/succeed {"result": ...}`, `POST /callbacks/{id}/fail
{"error": {"type", "message"}}`, `POST /callbacks/{id}/heartbeat`. A completion
is stored as the run's reserved signal `sys:cb:<op id>` through the signal
transaction (see `orchestrator/store/callbacks.py`), so it is kept if it comes
before the run waits and wakes the run if it waits. Statuses: 202 accepted;
404 unknown or expired token; 409 already completed, timed out (the overall
or the heartbeat timeout), or the run is finished; 400/413 bad body, nothing
written. A token is logged by its prefix only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from ..model import MAX_SIGNAL_PAYLOAD_BYTES
from ..store import callbacks as cb
from ..store.codec import encode_json
from .models import (
    CallbackFailRequest,
    CallbackHeartbeatRequest,
    CallbackSucceedRequest,
    iso,
)
from .service import Service

log = logging.getLogger(__name__)

PATHS = ("/callbacks/{id}/succeed", "/callbacks/{id}/fail", "/callbacks/{id}/heartbeat")


def loggable_path(path: str) -> str:
    """A request path as logs may show it: a callback's token cut to its prefix."""
    if not path.startswith("/callbacks/"):
        return path
    token, _, action = path.removeprefix("/callbacks/").partition("/")
    return f"/callbacks/{cb.token_prefix(token)}/{action}"


def complete(service: Service, token: str, outcome: dict[str, Any]) -> dict[str, Any]:
    text = encode_json(outcome, what="callback result", limit=MAX_SIGNAL_PAYLOAD_BYTES)
    ref, woke, timer = cb.send_completion(
        service.store, token, text, grace_ms=service.settings.sweep_grace_ms
    )
    log.info(
        "callback %s of run %s completed (ok=%s)",
        cb.token_prefix(token),
        ref.workflow_id,
        outcome["ok"],
    )
    if woke:
        service._send(ref.workflow_id, "callback")
    if timer:
        try:
            service.dispatcher.delete_schedule(timer)
        except Exception:
            log.exception("could not delete schedule %s", timer)
    return {"outcome": "succeeded" if outcome["ok"] else "failed", "woke": woke}


def heartbeat(service: Service, token: str) -> dict[str, Any]:
    ref = cb.send_heartbeat(service.store, token)
    return {"heartbeat_deadline": iso(ref.heartbeat_deadline) if ref.heartbeat_ms else None}


def register(
    app: APIGatewayHttpResolver,
    service: Callable[[], Service],
    body: Callable[..., Any],
) -> None:
    """Add the callback routes to the API's resolver."""

    def accepted(payload: dict[str, Any], status: int = 202) -> Response[Any]:
        return Response(
            status_code=status,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps(payload),
        )

    @app.post("/callbacks/<token>/succeed")
    def succeed(token: str) -> Response[Any]:
        req = body(CallbackSucceedRequest, optional=True)
        return accepted(complete(service(), token, {"ok": True, "result": req.result}))

    @app.post("/callbacks/<token>/fail")
    def fail(token: str) -> Response[Any]:
        req = body(CallbackFailRequest)
        error = {"type": req.error.type, "message": req.error.message}
        return accepted(complete(service(), token, {"ok": False, "error": error}))

    @app.post("/callbacks/<token>/heartbeat")
    def beat(token: str) -> Response[Any]:
        body(CallbackHeartbeatRequest, optional=True)
        return accepted(heartbeat(service(), token), 200)
