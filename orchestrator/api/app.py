"""Routes, and the handlers that answer with the error table of `errors.py`.

Every error is `{"error": {"code": ..., "message": ...}}`. A request that is
refused writes nothing: validation happens before the first write.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from .. import safejson
from ..aws import is_transient
from ..errors import (
    BadInputError,
    MethodNotAllowedError,
    NotFoundError,
    OrchestratorError,
    PayloadTooLargeError,
    RetryableError,
    UnsupportedMediaTypeError,
)
from ..store.codec import list_sk
from ..store.pages import Position
from ..store.sync import MAX_LIST_LIMIT
from ..store.sync import encode_cursor as encode_list_cursor
from . import bulk, callbacks, collections, jobs, queue_routes, schedule_routes
from .models import (
    CancelRequest,
    SignalRequest,
    StartRequest,
    run_view,
)
from .openapi import OPERATIONS, route_pattern
from .pages import PAGE_BYTES, decode_cursor, encode_cursor, sent_size
from .recovery import add_routes as add_recovery_routes
from .service import Service, signal_warning

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 512 * 1024

# Every route as (method, pattern), matched with fullmatch; from the one list.
ROUTES: list[tuple[str, re.Pattern[str]]] = [(op.method, route_pattern(op)) for op in OPERATIONS]


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


def path_param(raw: str) -> str:
    """A path parameter, percent-decoded. API Gateway's rawPath and the local
    server's path are both as sent, so the routes decode here, once, alike."""
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadInputError(f"{raw!r} is not valid percent-encoded UTF-8") from None


class _Resolver(APIGatewayHttpResolver):
    """Powertools keeps the request being resolved in a class attribute shared by
    every resolver (`BaseRouter.current_event`); here it is kept per thread, so
    that resolvers serving requests side by side in one process (the local API
    server, `orchestrator/local/http.py`) each read their own. Within one
    resolver, requests still go one at a time (the route's arguments are kept on
    the instance), as in a Lambda execution environment."""

    _local = threading.local()

    @property  # type: ignore[override]
    def current_event(self) -> Any:
        return self._local.event

    @current_event.setter
    def current_event(self, value: Any) -> None:
        self._local.event = value

    def resolve(self, event: Any, context: Any) -> dict[str, Any]:
        self._local.event = self._to_proxy_event(event)
        return super().resolve(event, context)


def build_app(service: Callable[[], Service]) -> APIGatewayHttpResolver:
    """The resolver; `service` is called per request (lazily built in Lambda,
    injected by the local stack and tests)."""
    app = _Resolver(strip_prefixes=["/api"])

    def body(
        model: type[BaseModel],
        *,
        optional: bool = False,
    ) -> Any:
        data = json_object(optional=optional)
        return model.model_validate(data)

    def json_object(*, optional: bool = False) -> dict[str, Any]:
        event = app.current_event
        media, _, params = (event.headers.get("content-type") or "").partition(";")
        charset = params.strip().lower().removeprefix("charset=").strip('"')
        if media.strip().lower() != "application/json" or charset not in ("", "utf-8"):
            # Refusing every other type keeps cross-site "simple" requests
            # (text/plain, forms) from reaching a route without a preflight.
            raise UnsupportedMediaTypeError(
                "send the request body as Content-Type: application/json"
            )
        raw: bytes | str = event.body or ""
        if event.is_base64_encoded and raw:
            try:
                raw = base64.b64decode(str(raw), validate=True)
            except binascii.Error:
                raise BadInputError("request body is not valid base64") from None
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"request body is over {MAX_BODY_BYTES} bytes")
        if not raw.strip():
            if optional:
                return {}
            raise BadInputError("request body is empty; send a JSON object")
        data = safejson.loads(raw, what="request body")
        if not isinstance(data, dict):
            raise BadInputError("request body must be a JSON object")
        return data

    add_recovery_routes(app, service, json_object)

    @app.get("/")
    def dashboard() -> Response[Any]:
        from ..dashboard import page

        return Response(status_code=200, content_type="text/html; charset=utf-8", body=page())

    @app.get("/openapi.json")
    def openapi_document() -> dict[str, Any]:
        from .openapi import document

        return document()

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
            tags=req.tags,
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
        unknown = set(q) - {"status", "name", "limit", "cursor", "parent_id", "tag", "build_id"}
        if unknown:
            raise BadInputError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        if "parent_id" in q:
            # A run's children, from its own history, in start order.
            if set(q) - {"parent_id", "limit", "cursor"}:
                raise BadInputError("parent_id combines with limit and cursor only")
            return _children(q)
        limit = safejson.int_param(q.get("limit", "50"), what="limit", lo=1, hi=MAX_LIST_LIMIT)
        page = service().list(
            status=q.get("status"),
            name=q.get("name"),
            limit=limit,
            cursor=q.get("cursor"),
            tag=q.get("tag"),
            build_id=q.get("build_id"),
        )
        fleet = service().fleet()
        views, cut = _by_bytes([run_view(r, fleet) for r in page.runs])
        cursor = page.cursor
        if cut < len(page.runs):  # the rest from the first run left out (newest first)
            last = page.runs[cut - 1]
            cursor = encode_list_cursor(list_sk(last.created_at, last.id))
        # `next` is `next_cursor` under the name every paged route answers with.
        return {"workflows": views, "next_cursor": cursor, "next": cursor}

    def _children(q: dict[str, str]) -> dict[str, Any]:
        limit = safejson.int_param(q.get("limit", "50"), what="limit", lo=1, hi=MAX_LIST_LIMIT)
        offset = 0
        if q.get("cursor"):
            offset = decode_cursor("children", q["cursor"]).taken or 0
        found, more = service().children_page(q["parent_id"], offset=offset, limit=limit)
        views, cut = _by_bytes([run_view(r) if r else None for _, r in found])
        if cut < len(found):
            more = True
        nxt = encode_cursor("children", Position(taken=offset + cut)) if more else None
        shown = [v for v in views if v is not None]  # a child not started yet is left out
        return {"workflows": shown, "next_cursor": nxt, "next": nxt}

    def _by_bytes(views: list[Any]) -> tuple[list[Any], int]:
        """The first views that stay within a page's bytes (at least one), and
        how many that is."""
        used = 0
        for i, view in enumerate(views):
            used += sent_size(view)
            if i and used > PAGE_BYTES:
                return views[:i], i
        return views, len(views)

    @app.get("/workflows/<workflow_id>")
    def get_run(workflow_id: str) -> dict[str, Any]:
        workflow_id = path_param(workflow_id)
        run = service().get(workflow_id)
        fleet = None if run.status.terminal else service().fleet()
        return run_view(run, fleet, values=service().values)

    @app.get("/workers")
    def workers() -> dict[str, Any]:
        q = app.current_event.query_string_parameters or {}
        everyone = q.get("all", "").lower() in ("1", "true", "yes")
        return {
            "workers": [w.as_dict() | {"live": live} for w, live in service().workers(everyone)],
            "now": service().clock.now_ms(),  # what last_seen ages are measured against
        }

    @app.post("/workflows/<workflow_id>/signals")
    def signal(workflow_id: str) -> Response[Any]:
        workflow_id = path_param(workflow_id)
        req = body(SignalRequest)
        sig, woke, seen = service().signal_read(workflow_id, req.name, req.payload)
        reply: dict[str, Any] = {
            "workflow_id": workflow_id,
            "signal": sig.name,
            "seq": sig.seq,
            "woke": woke,
        }
        if not woke:
            warning = signal_warning(seen, req.name)  # from the signal's own read
            if warning:
                reply["warning"] = warning
        return Response(
            status_code=202,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps(reply),
        )

    @app.post("/workflows/<workflow_id>/cancel")
    def cancel(workflow_id: str) -> Response[Any]:
        workflow_id = path_param(workflow_id)
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

    @app.post("/workflows/<workflow_id>/terminate")
    def terminate(workflow_id: str) -> Response[Any]:
        workflow_id = path_param(workflow_id)
        req = body(CancelRequest, optional=True)
        run, outcome = service().terminate(workflow_id, req.reason)
        message = (
            "the run is terminated (no cleanup)"
            if outcome == "terminated"
            else f"nothing to do: the run is already {run.status.value}"
        )
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps({**run_view(run), "outcome": outcome, "message": message}),
        )

    @app.get("/values/<sha256>/preview")
    def value_preview(sha256: str) -> dict[str, Any]:
        """The start of a value stored in S3, for a page that cannot follow the
        presigned link itself (the dashboard: its Content-Security-Policy allows
        fetches from its own origin only)."""
        from ..payloads import DIGEST_RE, ValueUnavailableError

        sha256 = path_param(sha256)
        if not DIGEST_RE.fullmatch(sha256):
            raise BadInputError("a value is named by its SHA-256: 64 lowercase hex digits")
        values = service().values
        if values is None:
            raise NotFoundError("no value bucket is configured: no value is stored in S3")
        try:
            text, size = values.preview(sha256)
        except ValueUnavailableError as e:
            raise NotFoundError(e.message) from None
        # preview_bytes: how much of the value the text covers (all of it when equal to bytes).
        return {
            "sha256": sha256,
            "bytes": size,
            "preview": text,
            "preview_bytes": len(text.encode()),
        }

    collections.register(app, service, path_param)
    callbacks.register(app, service, body)
    bulk.register(app, service, body)
    jobs.register(app, service, body)
    schedule_routes.register(app, service, body)
    queue_routes.register(app, service, body)

    # Every answer's status and code come from the error's class (errors.py):
    # the handlers below only say which class a foreign exception is.
    @app.exception_handler(OrchestratorError)
    def _domain(e: OrchestratorError) -> Response[Any]:
        return error_response(e.http_status, e.code, e.message)

    @app.exception_handler(ValidationError)
    def _invalid(e: ValidationError) -> Response[Any]:
        return _domain(BadInputError(_validation_message(e)))

    @app.exception_handler(ClientError)
    @app.exception_handler(BotoCoreError)
    def _aws(e: ClientError | BotoCoreError) -> Response[Any]:
        # Still failing after the SDK's retries: transient ones are worth a retry.
        if is_transient(e):
            code = e.response.get("Error", {}).get("Code", "") if isinstance(e, ClientError) else ""
            why = code or type(e).__name__
            return _domain(RetryableError(f"the store is busy ({why}); retry"))
        log.exception("AWS error")
        return _domain(OrchestratorError("internal error"))

    @app.not_found
    def _not_found(_: Exception) -> Response[Any]:
        path = app.current_event.path
        method = app.current_event.http_method
        allowed = sorted({m for m, p in ROUTES if p.fullmatch(path.removeprefix("/api"))})
        if allowed:
            return _domain(
                MethodNotAllowedError(
                    f"{method} is not allowed on {path}; use {', '.join(allowed)}"
                )
            )
        return _domain(NotFoundError(f"no route for {method} {path}"))

    return app


__all__ = ["ROUTES", "NotFoundError", "build_app"]
