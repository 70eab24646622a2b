"""The `/schedules` routes (DESIGN.md, second contract: Schedules).

    POST   /schedules                     create (201; 200 if the same definition exists; 409 if another)
    GET    /schedules                     list, with next fire times and recent decisions
    GET    /schedules/{name}
    POST   /schedules/{name}/pause        {"note"?}
    POST   /schedules/{name}/resume       {"note"?}
    POST   /schedules/{name}/trigger      start a run now (the overlap policy applies)
    POST   /schedules/{name}/backfill     {"start", "end"} ISO 8601
    DELETE /schedules/{name}

Errors go through the application's one error table (`app.py`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from pydantic import BaseModel

from ..errors import BadInputError, PayloadTooLargeError
from .schedules import BackfillRequest, NoteRequest, ScheduleRequest, schedule_view
from .service import Service

MAX_BODY_BYTES = 512 * 1024
M = TypeVar("M", bound=BaseModel)

ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("GET", re.compile(r"^/schedules/?$")),
    ("POST", re.compile(r"^/schedules/?$")),
    ("GET", re.compile(r"^/schedules/[^/]+/?$")),
    ("DELETE", re.compile(r"^/schedules/[^/]+/?$")),
    ("POST", re.compile(r"^/schedules/[^/]+/(pause|resume|trigger|backfill)/?$")),
]


def _json(status: int, value: Any) -> Response[Any]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(value)
    )


def register(app: APIGatewayHttpResolver, service: Callable[[], Service]) -> None:
    def body(model: type[M], *, optional: bool = False) -> M:
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

    def view(name: str) -> dict[str, Any]:
        sched = service().schedules
        s = sched.get(name)
        return schedule_view(s, sched.run_statuses([s]), service().clock.now_ms())

    @app.post("/schedules")
    def create_schedule() -> Response[Any]:
        req = body(ScheduleRequest)
        sched = service().schedules
        s, created = sched.create(req)
        view = schedule_view(s, sched.run_statuses([s]), service().clock.now_ms())
        return _json(201 if created else 200, view)

    @app.get("/schedules")
    def list_schedules() -> dict[str, Any]:
        sched = service().schedules
        found = sched.list()
        statuses = sched.run_statuses(found)
        now = service().clock.now_ms()
        return {"schedules": [schedule_view(s, statuses, now) for s in found]}

    @app.get("/schedules/<name>")
    def get_schedule(name: str) -> dict[str, Any]:
        return view(name)

    @app.delete("/schedules/<name>")
    def delete_schedule(name: str) -> dict[str, Any]:
        s = service().schedules.delete(name)
        return {"name": s.name, "deleted": True}

    @app.post("/schedules/<name>/pause")
    def pause(name: str) -> dict[str, Any]:
        service().schedules.pause(name, body(NoteRequest, optional=True).note)
        return view(name)

    @app.post("/schedules/<name>/resume")
    def resume(name: str) -> dict[str, Any]:
        service().schedules.resume(name, body(NoteRequest, optional=True).note)
        return view(name)

    @app.post("/schedules/<name>/trigger")
    def trigger(name: str) -> Response[Any]:
        decision = service().schedules.trigger(name)
        started = decision.outcome.value == "started"
        return _json(201 if started else 200, {"schedule": name, **decision.as_dict()})

    @app.post("/schedules/<name>/backfill")
    def backfill(name: str) -> Response[Any]:
        req = body(BackfillRequest)
        return _json(200, service().schedules.backfill(name, req.start, req.end))
