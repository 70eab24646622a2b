"""`ctx.invoke`: run another workflow as a child run and wait for its end.

The child's id is derived from the parent's id and the operation id
(`orchestrator.model.child_run_id`), so a replay, a duplicate delivery or a
takeover never starts two: the start is a conditional put, and an existing
child is the one. The parent's branch then waits at its operation for the
engine's signal `sys:child:<op>` (worker/operations/signal.py `receive`), which
the child's end delivers after the child's terminal write
(orchestrator/children.py); the payload is the child's outcome as stored (an
offloaded output as its pointer, read here on every run and replay). A
child that did not complete raises ChildWorkflowError, on replay too. A cancel
delivered to the waiting branch cancels the child first.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter

from orchestrator.errors import BadInputError, ChildWorkflowError, WorkflowCancelledError
from orchestrator.model import (
    STEP_NAME_RE,
    WORKFLOW_NAME_RE,
    Run,
    Status,
    StepKind,
    StepRecord,
    child_run_id,
    child_signal,
)
from orchestrator.store.codec import check_size, dumps

from .. import _core
from .._children import cancel_run
from .._registry import to_jsonable
from .._state import duration_ms
from .signal import receive


def check_task_queue(task_queue: str | None) -> None:
    """A child's task queue must be one the deployment has (as a start's is)."""
    from .._core import current

    if task_queue is None:
        return
    s, _, _ = current()
    if task_queue not in s.store.settings.task_queues:
        raise ValueError(
            f"task queue {task_queue!r} is not one of the deployment's "
            f"({', '.join(s.store.settings.task_queues)})"
        )


async def invoke(
    name: str,
    workflow: str,
    input: Any,
    *,
    execution_timeout: timedelta | float | None,
    result_type: Any,
    task_queue: str | None = None,
) -> Any:
    if not isinstance(name, str) or not STEP_NAME_RE.fullmatch(name):
        raise ValueError("an invoke name is 1 to 200 printable characters")
    if not isinstance(workflow, str) or not WORKFLOW_NAME_RE.fullmatch(workflow):
        raise ValueError(f"{workflow!r} is not a workflow name")
    check_task_queue(task_queue)
    try:
        text = dumps(to_jsonable(input))
        check_size(text, what="a child's input", limit=_core.input_limit())
    except (TypeError, ValueError, BadInputError) as e:
        raise ValueError(f"the child's input cannot be sent: {e}") from e
    timeout_ms = None if execution_timeout is None else duration_ms(execution_timeout)
    s, op_id, rec = await _core.enter("invoke")
    child_id = child_run_id(s.workflow_id, op_id)
    if rec is not None:
        _core.check(s, rec, StepKind.INVOKE, name)
        if not rec.resolved:
            rec = await _wait(s, child_id, rec, written=True)
        return await _outcome(s, rec, result_type)
    now = s.clock.now_ms()
    child = Run(
        id=child_id,
        name=workflow,
        status=Status.PENDING,
        input=text,
        created_at=now,
        updated_at=now,
        deadline_at=None if timeout_ms is None else now + timeout_ms,
        parent_id=s.workflow_id,
        parent_op=op_id,
        task_queue=task_queue,
    )
    _core.check_lease(s)
    stored, created = await _core.io(s, s.store.create_run(child))
    if stored.parent_id != s.workflow_id or stored.parent_op != op_id:
        raise ChildWorkflowError(
            child_id, "conflict", "ConflictError", "a run with the child's id exists already"
        )
    if created or stored.status == Status.PENDING:
        await _core.io(s, s.store.send(child_id, "start", stored.task_queue, name=stored.name))
    pending = StepRecord(
        op_id,
        name,
        StepKind.INVOKE,
        s.epoch,
        now,
        started_at=now,
        signal=child_signal(op_id),
    )
    return await _outcome(s, await _wait(s, child_id, pending, written=False), result_type)


async def _wait(s: Any, child_id: str, rec: StepRecord, *, written: bool) -> StepRecord:
    try:
        return await receive(s, rec, written=written)
    except WorkflowCancelledError as e:
        await _core.io(s, cancel_run(s.store, child_id, f"parent cancelled: {e}"[:500], s.clock))
        raise


async def _outcome(s: Any, rec: StepRecord, result_type: Any) -> Any:
    outcome = json.loads(rec.result or "{}")
    status = outcome.get("status")
    if status != Status.COMPLETED.value:
        error = outcome.get("error") or {}
        raise ChildWorkflowError(
            outcome.get("child_id", ""),
            status or "unknown",
            error.get("type", ""),
            error.get("message", ""),
        )
    value = outcome.get("output")
    if outcome.get("output_ref"):
        # An offloaded output travels as its pointer (orchestrator/children.py):
        # read here, on the first run and on every replay, never handed on as is.
        text = await _core.io(s, s.store.values.get(outcome["output_ref"]))
        value = json.loads(text or "null")
    if result_type is not None:
        return TypeAdapter(result_type).validate_python(value)
    return value
