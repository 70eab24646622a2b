"""Request bodies and response shapes, validated with pydantic at the boundary."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..model import (
    SIGNAL_NAME_RE,
    WORKFLOW_ID_RE,
    WORKFLOW_NAME_RE,
    Run,
    StepRecord,
)


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the workflow name a worker registered with @workflow")
    input: Any = None
    id: str | None = Field(default=None, description="idempotency key: the run's id")
    execution_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="the run fails as timed out after this long, whatever it is doing",
    )
    task_queue: str | None = Field(
        default=None, description="the task queue whose workers run it (default: default)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not WORKFLOW_NAME_RE.match(v):
            raise ValueError(
                "must start with a letter and hold at most 64 letters, digits, '_', '.' or '-'"
            )
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not WORKFLOW_ID_RE.match(v):
            raise ValueError(
                "must start with a letter or digit and hold at most 128 letters, digits, "
                "'_', '.', ':' or '-'"
            )
        return v


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


class SignalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    payload: Any = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SIGNAL_NAME_RE.match(v):
            raise ValueError(
                "must start with a letter or digit and hold at most 128 letters, digits, "
                "'_', '.', ':' or '-'"
            )
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


def run_view(run: Run, served: set[str] | None = None) -> dict[str, Any]:
    """The run as the API shows it. With `served` (the names live workers serve),
    a run that is not finished says whether any live worker can run it."""
    view = {
        "id": run.id,
        "name": run.name,
        "status": run.status.value,
        "input": _json(run.input),
        "output": _json(run.output),
        "error": run.error.as_dict() if run.error else None,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "wake_at": iso(run.wake_at),
        "waiting_for": run.wait_signal,
        "attempt": run.epoch,
        "deadline_at": iso(run.deadline_at),
        "cancel_requested": run.cancel_requested,
    }
    view["task_queue"] = run.task_queue or "default"
    if served is not None and not run.status.terminal:
        view["unserved"] = served_key(run.name, run.task_queue) not in served
    return view


def served_key(name: str, task_queue: str | None) -> str:
    """How `run_view`'s `served` set names a workflow on a task queue."""
    return name if task_queue in (None, "default") else f"{name}@{task_queue}"


def step_view(step: StepRecord) -> dict[str, Any]:
    view: dict[str, Any] = {
        "position": step.position,
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
    else:
        view.update(
            signal=step.signal,
            deadline=iso(step.wake_at),
            resolved=step.resolved,
            timed_out=step.timed_out,
            payload=_json(step.result) if step.resolved and not step.timed_out else None,
        )
    if step.attempts:
        view["attempts"] = [
            {**a, "started_at": iso(a.get("started_at")), "finished_at": iso(a.get("finished_at"))}
            for a in step.attempts
        ]
    if step.retry_at is not None and not step.resolved:
        view["retry_at"] = iso(step.retry_at)
    return view
