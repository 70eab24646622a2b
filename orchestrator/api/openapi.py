"""The API's routes as data, and the OpenAPI 3.1 document built from them.

`OPERATIONS` is the one list of routes: `app.ROUTES` (405 answers, OPTIONS)
is derived from it, the request body schemas are the pydantic models' own
(`model_json_schema`), and a test checks that every route the resolver serves
is listed here. The document is served at GET /openapi.json and fuzzed by
schemathesis in `tests/security/test_fuzz.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel

from ..model import MAX_GENERATION, WORKFLOW_ID_RE, Status
from ..payloads import DIGEST_RE
from ..store.jobs import JOB_ID_RE
from ..store.sync import MAX_LIST_LIMIT
from .jobs import MAX_LIST_LIMIT as MAX_JOB_LIST
from .jobs import JobCancelRequest
from .models import (
    BulkRequest,
    CallbackFailRequest,
    CallbackHeartbeatRequest,
    CallbackSucceedRequest,
    CancelRequest,
    SignalRequest,
    StartRequest,
)
from .pages import DEFAULT_PAGE, MAX_PAGE
from .queue_routes import LimitsRequest
from .recovery import ForkRequest, MigrateRequest, RedriveRequest
from .schedules import BackfillRequest, NoteRequest, ScheduleRequest

STATUS_VALUES = [s.value for s in Status]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI template, {workflow_id} for a path parameter
    operation_id: str
    summary: str
    body: type[BaseModel] | None = None
    ok: tuple[int, ...] = (200,)
    query: tuple[dict[str, Any], ...] = ()
    content_type: str = "application/json"
    slash: bool = True  # a trailing slash is accepted too
    errors: tuple[int, ...] = ()  # refusals beside those every operation of its kind has


# A paged collection's parameters (orchestrator/api/pages.py): the answer's `next`
# is the cursor of the following page, null after the last.
_PAGE = (
    {
        "name": "limit",
        "in": "query",
        "description": f"items per page (at most; a page is also cut by bytes), default {DEFAULT_PAGE}",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "the previous page's `next`",
        "schema": {"type": "string"},
    },
)

_ID = {
    "name": "workflow_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": WORKFLOW_ID_RE.pattern.replace("\\Z", "$")},
}

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/", "dashboard", "The dashboard page", content_type="text/html", slash=False),
    Operation("GET", "/openapi.json", "openapi", "This document", slash=False),
    Operation(
        "GET",
        "/dashboard/{file}",
        "dashboardAsset",
        "A dashboard file (its scripts and style.css)",
        content_type="text/plain",
        slash=False,
    ),
    Operation(
        "GET",
        "/workers",
        "listWorkers",
        "Live workers and the names they serve",
        query=({"name": "all", "in": "query", "schema": {"type": "string"}},),
    ),
    Operation(
        "GET",
        "/workflows",
        "listRuns",
        "Runs, newest first (a bounded number of reads per call; see docs/security.md)",
        query=(
            {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUS_VALUES}},
            {"name": "name", "in": "query", "schema": {"type": "string"}},
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
            },
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            {
                "name": "parent_id",
                "in": "query",
                "description": "list this run's children instead (no other parameter)",
                "schema": {"type": "string"},
            },
        ),
    ),
    Operation("POST", "/workflows", "startRun", "Start a run", StartRequest, ok=(200, 201)),
    Operation("GET", "/workflows/{workflow_id}", "getRun", "One run"),
    Operation(
        "GET",
        "/workflows/{workflow_id}/steps",
        "getSteps",
        "A run's steps, a page at a time",
        query=(
            {
                "name": "generation",
                "in": "query",
                "description": "a continue-as-new generation's (default: the current one)",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_GENERATION},
            },
            *_PAGE,
        ),
    ),
    Operation(
        "POST",
        "/workflows/{workflow_id}/signals",
        "signalRun",
        "Send a signal (429 when the run's inbox is at its limit)",
        SignalRequest,
        ok=(202,),
        errors=(429,),
    ),
    Operation(
        "POST",
        "/workflows/{workflow_id}/cancel",
        "cancelRun",
        "Cancel a run (send {} for no reason: every POST is application/json)",
        CancelRequest,
        ok=(200, 202),
    ),
    Operation(
        "GET",
        "/workflows/{workflow_id}/signals",
        "getInbox",
        "A run's buffered signals, a page at a time",
        query=_PAGE,
    ),
    Operation(
        "POST",
        "/workflows/{workflow_id}/terminate",
        "terminateRun",
        "End a run now, with no cleanup (send {} for no reason)",
        CancelRequest,
    ),
    Operation(
        "GET",
        "/workflows/{workflow_id}/history",
        "exportHistory",
        "A run's whole history, a page at a time (the run on the first page)",
        query=_PAGE,
    ),
    Operation(
        "POST",
        "/bulk/{action}",
        "bulkAction",
        "Cancel or terminate the unfinished runs, or redrive the runs, a filter matches "
        "(dry run by default); done as a job: 202 with its progress when it does not "
        "end within the request",
        BulkRequest,
        ok=(200, 202),
        errors=(429,),
    ),
    Operation(
        "GET",
        "/jobs",
        "listJobs",
        "Bulk operations and backfills, newest first",
        query=(
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_JOB_LIST},
            },
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        ),
    ),
    Operation("GET", "/jobs/{job_id}", "getJob", "A job's status, progress and outcome"),
    Operation(
        "POST",
        "/jobs/{job_id}/cancel",
        "cancelJob",
        "Stop a running job after its current page (send {})",
        JobCancelRequest,
    ),
    Operation(
        "POST",
        "/workflows/{workflow_id}/redrive",
        "redriveRun",
        "Put a failed or cancelled run back to pending (send {})",
        RedriveRequest,
        ok=(202,),
    ),
    Operation(
        "POST",
        "/workflows/{workflow_id}/migrate",
        "migrateRun",
        "Move a pinned run to another build (its queue must exist; 409 while leased)",
        MigrateRequest,
    ),
    Operation(
        "POST",
        "/workflows/{workflow_id}/fork",
        "forkRun",
        "Start a new run with the records before an operation",
        ForkRequest,
        ok=(201,),
    ),
    Operation("GET", "/schedules", "listSchedules", "Recurring schedules, with next fire times"),
    Operation(
        "POST",
        "/schedules",
        "createSchedule",
        "Create a recurring schedule",
        ScheduleRequest,
        ok=(200, 201),
    ),
    Operation("GET", "/schedules/{name}", "getSchedule", "One schedule"),
    Operation("DELETE", "/schedules/{name}", "deleteSchedule", "Delete a schedule"),
    Operation("POST", "/schedules/{name}/pause", "pauseSchedule", "Pause", NoteRequest),
    Operation("POST", "/schedules/{name}/resume", "resumeSchedule", "Resume", NoteRequest),
    Operation(
        "POST",
        "/schedules/{name}/trigger",
        "triggerSchedule",
        "Start a run now (send {})",
        NoteRequest,
        ok=(200, 201),
    ),
    Operation(
        "POST",
        "/schedules/{name}/backfill",
        "backfillSchedule",
        "Start the ticks of a past range (idempotent); done as a job: 202 with its "
        "progress when it does not end within the request",
        BackfillRequest,
        ok=(200, 202),
        errors=(429,),
    ),
    Operation("GET", "/queues", "listQueues", "Task queues: depth, in flight, limits"),
    Operation(
        "GET",
        "/values/{sha256}/preview",
        "previewValue",
        "The first 64 KB of a value stored in S3 (an output_link, result_link or "
        "output_ref names it by its sha256) and its size in bytes",
    ),
    Operation(
        "POST", "/queues/{name}", "setQueueLimits", "Set a task queue's limits", LimitsRequest
    ),
    Operation(
        "POST",
        "/callbacks/{token}/succeed",
        "succeedCallback",
        "Complete a callback with a result",
        CallbackSucceedRequest,
        ok=(202,),
    ),
    Operation(
        "POST",
        "/callbacks/{token}/fail",
        "failCallback",
        "Complete a callback with a failure",
        CallbackFailRequest,
        ok=(202,),
    ),
    Operation(
        "POST",
        "/callbacks/{token}/heartbeat",
        "heartbeatCallback",
        "Tell a callback the work goes on",
        CallbackHeartbeatRequest,
    ),
)


def route_pattern(op: Operation) -> re.Pattern[str]:
    """The regex (for fullmatch) of the paths an operation serves."""
    body = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(op.path))
    return re.compile(body + ("/?" if op.slash else ""))


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


# Path parameters with a fixed form (others are any string the route looks up).
_PATH_PATTERNS = {
    "sha256": {"pattern": DIGEST_RE.pattern.replace("\\Z", "$")},
    "job_id": {"pattern": f"^{JOB_ID_RE.pattern}$"},
}


def _operation(op: Operation) -> dict[str, Any]:
    params: list[dict[str, Any]] = list(op.query)
    if "{workflow_id}" in op.path:
        params.append(_ID)
    for name in re.findall(r"\{(\w+)\}", op.path):
        if name != "workflow_id":
            form = {"type": "string", **_PATH_PATTERNS.get(name, {})}
            params.append({"name": name, "in": "path", "required": True, "schema": form})
    error = {"description": "refused", "content": {"application/json": {"schema": _ERROR}}}
    responses: dict[str, Any] = {
        str(code): {"description": "ok", "content": {op.content_type: {"schema": {}}}}
        for code in op.ok
    }
    for code in ("400", "404"):
        responses[code] = error
    if op.method in ("POST", "DELETE"):
        # A change that finds the run (or schedule, callback) in a state it
        # cannot take: an id taken with another input, a redrive of a run that
        # has not ended, a signal to an ended run, a second completion.
        responses["409"] = error
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": params,
        "responses": responses,
    }
    for status in op.errors:
        responses[str(status)] = error
    if op.body is not None:
        responses.update({"413": error, "415": error})
        # Nested models are components (`$defs` inside a body schema would not
        # resolve against the document's root).
        schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
        _COMPONENTS.update(schema.pop("$defs", {}))
        out["requestBody"] = {
            "required": True,  # every POST carries a JSON body (415 otherwise)
            "content": {"application/json": {"schema": schema}},
        }
    return out


_COMPONENTS: dict[str, Any] = {}


@cache
def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "components": {"schemas": dict(_COMPONENTS)},
        "openapi": "3.1.0",
        "info": {
            "title": "orchestrator",
            "version": "1",
            "description": 'Errors are {"error": {"code", "message"}} with a 4xx/5xx status.',
        },
        "paths": paths,
    }


__all__ = ["OPERATIONS", "Operation", "document", "route_pattern"]
