"""The `/schedules` routes (DESIGN.md, second contract: Schedules).

    POST   /schedules                     create (201; 200 if the same definition exists; 409 if another)
    GET    /schedules                     list, with next fire times and recent decisions
    GET    /schedules/{name}
    POST   /schedules/{name}/pause        {"note"?}
    POST   /schedules/{name}/resume       {"note"?}
    POST   /schedules/{name}/trigger      start a run now (the overlap policy applies)
    POST   /schedules/{name}/backfill     {"start", "end"} ISO 8601
    DELETE /schedules/{name}

Errors go through the one error table (`errors.py`), answered by `app.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from ..errors import UnsupportedMediaTypeError
from .jobs import job_reply
from .schedules import BackfillRequest, NoteRequest, ScheduleRequest, schedule_view
from .service import Service


def _json(status: int, value: Any) -> Response[Any]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(value)
    )


def register(
    app: APIGatewayHttpResolver, service: Callable[[], Service], body: Callable[..., Any]
) -> None:
    """`body` is the application's one body reader (JSON only, hardened decoding)."""

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
        # No body is needed; one that comes must be JSON, as on every route
        # (a form or text/plain body is what a cross-site page sends).
        event = app.current_event
        media = (event.headers.get("content-type") or "").partition(";")[0].strip().lower()
        if (media or event.body) and media != "application/json":
            raise UnsupportedMediaTypeError(
                "DELETE takes no body; send none, or Content-Type: application/json"
            )
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
        body(NoteRequest, optional=True)  # JSON only: no cross-site POST
        decision = service().schedules.trigger(name)
        started = decision.outcome.value == "started"
        return _json(201 if started else 200, {"schedule": name, **decision.as_dict()})

    @app.post("/schedules/<name>/backfill")
    def backfill(name: str) -> Response[Any]:
        req = body(BackfillRequest)
        svc = service()
        job = svc.schedules.backfill(name, req.start, req.end)
        return job_reply(job, svc.clock.now_ms(), {"schedule": job.request["schedule"]})
