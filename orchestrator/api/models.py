"""Request bodies and response shapes, validated with pydantic at the boundary."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..model import (
    RESERVED_SIGNAL_PREFIX,
    SIGNAL_NAME_RE,
    WORKFLOW_ID_RE,
    WORKFLOW_NAME_RE,
    Run,
    Signal,
    StepRecord,
    child_run_id,
    child_signal,
)
from ..payloads import (
    MAX_INLINE_READ_BYTES,
    SyncValues,
    ValueUnavailableError,
    is_pointer,
    parse_pointer,
)
from .pages import sent_size

CALLBACK_SIGNAL_PREFIX = f"{RESERVED_SIGNAL_PREFIX}cb:"  # = store.callbacks.callback_signal("")
CHILD_SIGNAL_PREFIX = child_signal("")


def _schema_pattern(pattern: re.Pattern[str]) -> str:
    """The pattern as JSON Schema writes it (ECMA-262: `$` ends the string)."""
    return pattern.pattern.replace("\\Z", "$")


MAX_CALLBACK_ERROR_CHARS = 16 * 1024  # a callback failure's message


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(
        description="the workflow name a worker registered with @workflow",
        json_schema_extra={"pattern": _schema_pattern(WORKFLOW_NAME_RE)},
    )
    input: Any = None
    id: str | None = Field(
        default=None,
        description="idempotency key: the run's id",
        json_schema_extra={"pattern": _schema_pattern(WORKFLOW_ID_RE)},
    )
    execution_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="the run fails as timed out after this long, whatever it is doing",
    )
    tags: dict[str, str] | None = Field(
        default=None, description="custom fields to list runs by: GET /workflows?tag=key=value"
    )
    task_queue: str | None = Field(
        default=None, description="the task queue whose workers run it (default: default)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not WORKFLOW_NAME_RE.fullmatch(v):
            raise ValueError(
                "must start with a letter and hold at most 64 letters, digits, '_', '.' or '-'"
            )
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not WORKFLOW_ID_RE.fullmatch(v):
            raise ValueError(
                "must start with a letter or digit and hold at most 128 letters, digits, "
                "'_', '.', ':' or '-'"
            )
        return v


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(default=None, max_length=1000)


class BulkRequest(BaseModel):
    """Which runs a bulk cancel, terminate or redrive acts on (orchestrator/api/bulk.py).
    A dry run (the default) counts them; `dry_run: false` needs `confirm_count` =
    that count."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=64)
    status: str | None = None
    created_after: datetime | None = None  # ISO 8601, inclusive
    created_before: datetime | None = None  # ISO 8601, exclusive
    dry_run: bool = True
    confirm_count: int | None = Field(default=None, ge=0)
    reason: str | None = Field(default=None, max_length=1000)


class SignalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(json_schema_extra={"pattern": _schema_pattern(SIGNAL_NAME_RE)})
    payload: Any = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SIGNAL_NAME_RE.fullmatch(v):
            raise ValueError(
                "must start with a letter or digit and hold at most 128 letters, digits, "
                "'_', '.', ':' or '-'"
            )
        if v.startswith(RESERVED_SIGNAL_PREFIX):
            raise ValueError(f"names starting with {RESERVED_SIGNAL_PREFIX!r} are the engine's own")
        return v


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _read(text: str | None, values: SyncValues | None) -> tuple[str | None, dict[str, Any] | None]:
    """A stored value as a view shows it: (JSON text, None), or (None, link) for an
    offloaded value above `MAX_INLINE_READ_BYTES` (as stored, or as the API sends
    it: `pages.sent_size`), or for any offloaded value when
    the view reads no values (lists: the link then names the object, no URL).
    A value whose object is gone (expired) is (None, link with `unavailable`,
    the reason, and no URL)."""
    if not is_pointer(text):
        return text, None
    assert text is not None
    digest, size = parse_pointer(text)
    if values is None:
        return None, {"bytes": size, "sha256": digest}
    try:
        shown, link = values.view(text)
        if shown is not None and sent_size(json.loads(shown)) > MAX_INLINE_READ_BYTES:
            # Within the limit as stored, past it as the API sends it (non-ASCII
            # text is sent as \uXXXX escapes): a link keeps every answer bounded.
            return None, values.link(text)
        return shown, link
    except ValueUnavailableError as e:
        # The record stays readable: its value is marked, not the whole answer failed.
        return None, {"bytes": size, "sha256": digest, "unavailable": e.message}


@dataclass(frozen=True)
class Fleet:
    """What the worker registry says, read once per API request: the names live
    workers serve (`served_key`), and for each build id the last moment a worker
    of it was live (now, for a live one)."""

    served: set[str]
    build_live_at: dict[str, int]
    now: int
    stranded_after_ms: int

    def stranded(self, run: Run) -> bool:
        """A pinned run whose build has had no live worker for `stranded_after_ms`.
        A build the registry holds no item for (none ever registered, or its items
        expired an hour after their last beat) counts as gone that long."""
        if not run.pinned or run.build_id is None or run.status.terminal:
            return False
        last = self.build_live_at.get(run.build_id)
        return last is None or self.now - last > self.stranded_after_ms


def run_view(
    run: Run, fleet: Fleet | None = None, *, values: SyncValues | None = None
) -> dict[str, Any]:
    """The run as the API shows it. With `fleet` (what the worker registry says),
    a run that is not finished says whether any live worker can run it, and a
    pinned one whether its build has gone (`stranded`). An offloaded output is read
    through `values`, or shown as `output_link` (see `_read`); so is an offloaded
    input (a child's or a continue-as-new's, written by a worker), as `input_link`."""
    output, link = _read(run.output, values)
    input_text, input_link = _read(run.input, values)  # a worker-written input may be offloaded
    names, callbacks, children = _waits(run.wait_signals)
    view = {
        "id": run.id,
        "name": run.name,
        "status": run.status.value,
        "input": _json(input_text),
        "output": _json(output),
        "error": run.error.as_dict() if run.error else None,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "wake_at": iso(run.wake_at),
        "waiting_for": ",".join(names) or None,
        "attempt": run.epoch,
        "deadline_at": iso(run.deadline_at),
        "cancel_requested": run.cancel_requested,
        "parent_id": run.parent_id,
        "parent_operation": run.parent_op,
        "tags": run.tags,
        "redrive_count": run.redrive_count,
        "generation": run.generation,
        "build_id": run.build_id,
    }
    if link is not None:
        view["output_link"] = link
    if input_link is not None:
        view["input_link"] = input_link
    if callbacks:
        view["waiting_for_callbacks"] = callbacks
    if children:
        view["waiting_for_children"] = children
    if run.outcomes:
        view["earlier_outcomes"] = list(run.outcomes)
    if run.forked_from:
        view["forked_from"] = run.forked_from
    if run.claim_failure is not None:  # claims ended by one error, counted toward failing it
        view["claim_failure"] = run.claim_failure.as_dict()
    view["task_queue"] = run.task_queue or "default"
    if run.pinned:
        view["pinned"] = True
    if fleet is not None and not run.status.terminal:
        view["unserved"] = served_key(run.name, run.task_queue) not in fleet.served
        if run.pinned:
            view["stranded"] = fleet.stranded(run)
    return view


def _waits(signals: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """What a parked run waits for, split by who sends it: the signals a user
    sends (`waiting_for`), and the engine's own signals, which stand for a
    callback's completion (`sys:cb:<op id>`) or a child run's end
    (`sys:child:<op id>`): those are shown as the operation ids they belong to."""
    names: list[str] = []
    callbacks: list[str] = []
    children: list[str] = []
    for name in signals:
        if name.startswith(CALLBACK_SIGNAL_PREFIX):
            callbacks.append(name.removeprefix(CALLBACK_SIGNAL_PREFIX))
        elif name.startswith(CHILD_SIGNAL_PREFIX):
            children.append(name.removeprefix(CHILD_SIGNAL_PREFIX))
        else:
            names.append(name)
    return names, callbacks, children


def signal_view(sig: Signal) -> dict[str, Any]:
    """A buffered signal: name, arrival number, payload, when it was sent."""
    return {
        "name": sig.name,
        "seq": sig.seq,
        "payload": _json(sig.payload),
        "sent_at": iso(sig.sent_at),
    }


def served_key(name: str, task_queue: str | None) -> str:
    """How `run_view`'s `served` set names a workflow on a task queue."""
    return name if task_queue in (None, "default") else f"{name}@{task_queue}"


def step_view(
    step: StepRecord, workflow_id: str | None = None, *, values: SyncValues | None = None
) -> dict[str, Any]:
    text, link = _read(step.result, values)
    step = step if text is step.result else replace(step, result=text)
    view: dict[str, Any] = {
        "id": step.op_id,
        "parent_id": step.parent_id,
        "position": int(step.op_id.rpartition(".")[2].lstrip("t") or 0),
        "name": step.name,
        "kind": step.kind.value,
        "started_at": iso(step.started_at),
        "recorded_at": iso(step.recorded_at),
    }
    if step.kind == "step":
        view["result"] = _json(step.result)
        view["error"] = step.error.as_dict() if step.error else None
    elif step.kind == "sleep":
        view["wake_at"] = iso(step.wake_at)
    elif step.kind == "cancel":
        view["reason"] = step.result
    elif step.kind in ("parallel", "map"):
        body = _json(step.result) or {}
        view["completion_reason"] = body.get("reason")
        view["items"] = [
            {
                "index": d["i"],
                "status": d["s"],
                "result": _json(d["r"]) if "r" in d else None,
                "error": d.get("e"),
            }
            for d in body.get("items", [])
        ]
        view["replay_children"] = step.replay_children
    elif step.kind == "invoke":
        outcome = _json(step.result) if step.resolved and not step.timed_out else None
        view["child_id"] = (
            outcome["child_id"]
            if outcome
            else (child_run_id(workflow_id, step.op_id) if workflow_id else None)
        )
        view["child_status"] = outcome["status"] if outcome else None
        view["result"] = outcome.get("output") if outcome else None
        view["error"] = outcome.get("error") if outcome else None
        if outcome and outcome.get("output_ref"):
            # An offloaded child output stays a reference (size and digest): the
            # child's own GET reads it, so a parent's step list reads no child values.
            digest, size = parse_pointer(outcome["output_ref"])
            view["output_ref"] = {"bytes": size, "sha256": digest}
    elif step.kind == "callback":
        # The completion is stored as {"ok": true, "result": ...} or {"ok": false,
        # "error": {...}} (POST /callbacks/{id}/succeed or /fail): shown as the
        # result, or as the callback's error.
        body = _json(step.result) if step.resolved and not step.timed_out else None
        body = body if isinstance(body, dict) else {}
        failed = bool(body) and not body.get("ok")
        view.update(
            callback_id=(step.callback_id or "")[:6] + "…",  # a capability: a prefix only
            deadline=iso(step.wake_at),
            resolved=step.resolved,
            timed_out=step.timed_out,
            result=None if failed else body.get("result"),
            error=(body.get("error") or {"type": "Error", "message": ""}) if failed else None,
        )
    elif step.kind == "patch":
        pass  # a marker: this run took the patched code path named `name`; no time, no value
    elif step.kind in ("context", "branch", "condition"):
        view["result"] = None if step.replay_children else _json(step.result)
        view["error"] = step.error.as_dict() if step.error else None
        view["replay_children"] = step.replay_children
    else:
        view.update(
            signal=step.signal,
            deadline=iso(step.wake_at),
            resolved=step.resolved,
            timed_out=step.timed_out,
            payload=_json(step.result) if step.resolved and not step.timed_out else None,
        )
    if link is not None:
        view["result_link"] = link
    if step.attempts:
        view["attempts"] = [
            {**a, "started_at": iso(a.get("started_at")), "finished_at": iso(a.get("finished_at"))}
            for a in step.attempts
        ]
    elif step.kind == "step":
        # A step that succeeded at its first attempt records no attempt list (it
        # would cost bytes on every step write); the view shows that one attempt.
        view["attempts"] = [
            {
                "attempt": 1,
                "started_at": iso(step.started_at),
                "finished_at": iso(step.recorded_at),
            }
        ]
    if step.retry_at is not None and not step.resolved:
        view["retry_at"] = iso(step.retry_at)
    return view


class CallbackSucceedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result: Any = None


class CallbackError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    message: str = Field(default="", max_length=MAX_CALLBACK_ERROR_CHARS)


class CallbackFailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: CallbackError


class CallbackHeartbeatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
