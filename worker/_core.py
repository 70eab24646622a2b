"""The core every durable operation goes through: taking an operation id,
finding its record on replay, checking it, recording first-write-wins, store
requests that unwind the run when they fail, delivering a cancel, and waiting
where the run may park.

Operations live one per module in `worker/operations/`; this module owns what
they share, so that ids, replay checks and unwinding work the same everywhere.
"""

from __future__ import annotations

import contextvars
import logging
import typing
from collections.abc import Awaitable
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.errors import NonDeterminismError, WorkflowCancelledError, WorkflowContextError
from orchestrator.model import StepKind, StepRecord

from ._outcomes import _transient
from ._parking import CANCEL
from ._scope import Scope, TaskFrame, frame_var, outside_var, run_var, scope_var
from ._state import ExecutionTimedOut, LeaseLost, ReadOnlyReplayError, RunState, StoreUnavailable
from ._store import OWNER_LEASE, LeaseExpiredBeforeSend
from .plugins import Operation

_T = typing.TypeVar("_T")

log = logging.getLogger("worker")

# Set while a step function runs (its name), so that a durable call inside it is refused.
in_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("in_step", default=None)


def current() -> tuple[RunState, Scope, TaskFrame]:
    s, scope, frame = run_var.get(), scope_var.get(), frame_var.get()
    if s is None or scope is None or frame is None:
        raise WorkflowContextError(
            "durable calls are made from the workflow function (or a task it created), "
            "not from another thread or task"
        )
    return s, scope, frame


def input_limit() -> int:
    """The largest input the current run may give a run (a child's, its next
    generation's), offloaded like a result: 100 MiB with a value bucket, the
    API's 128 KB without one (`AsyncValues.max_input_bytes`)."""
    limit: int = current()[0].store.values.max_input_bytes
    return limit


def unwind(s: RunState, exc: BaseException) -> typing.NoReturn:
    s.unwinding = exc
    raise exc


async def io(s: RunState, call: Awaitable[_T]) -> _T:
    """Await a store request. One that failed transiently after the SDK's retries
    (throttling, 5xx, a connection error or a lost answer) unwinds the run
    (StoreUnavailable) instead of reaching workflow code as an exception, which
    would fail the run or be swallowed by `except Exception`."""
    token = OWNER_LEASE.set(s.lease_valid)  # checked again before each HTTP attempt
    outside = outside_var.set(True)  # tasks the SDK creates meanwhile are not the run's
    s.enter_busy()
    try:
        return await call
    except LeaseExpiredBeforeSend:
        log.warning("run %s: lease ran out before a request was sent; abandoned", s.workflow_id)
        s.lose()
        unwind(s, LeaseLost())
    except (ClientError, BotoCoreError) as e:
        if not _transient(e):
            raise  # a request this code should not have made: fails the run, clearly
        log.warning(
            "run %s: %s; abandoning this claim (the run resumes after its lease)", s.workflow_id, e
        )
        unwind(s, StoreUnavailable(str(e)))
    finally:
        s.leave_busy()
        outside_var.reset(outside)
        OWNER_LEASE.reset(token)


def check_lease(s: RunState) -> None:
    """Called before every step attempt and every record: a replay check never gets
    past it."""
    if s.read_only:
        unwind(s, ReadOnlyReplayError("a replay check reached a step function or a write"))
    try:
        s.check_lease()
    except LeaseLost as e:
        unwind(s, e)


async def stop_replay(s: RunState, op_id: str) -> typing.NoReturn:
    """A replay check stops this branch where it would do new work (an operation
    with no record, nor any under it; a record to write): everything before it
    replayed. The branch waits there until the check ends."""
    s.frontier.append(op_id)
    while True:
        await wait_parked(op_id, wake_at=None)


def stamped(s: RunState, rec: StepRecord) -> StepRecord:
    """`rec` as this claim writes it: in the run's current attempt."""
    return rec if rec.run_attempt == s.run_attempt else replace(rec, run_attempt=s.run_attempt)


async def record(s: RunState, rec: StepRecord) -> StepRecord:
    if s.read_only:
        await stop_replay(s, rec.op_id)
    check_lease(s)
    rec = stamped(s, rec)
    cp = s.checkpoints
    if cp is not None:
        if cp.batches(rec):
            await cp.add(rec)  # written with others (worker/_checkpoints.py)
            return rec
        await cp.flush()  # what is durable stays a prefix of what the run did
    winner = await io(s, s.store.put_step(s.workflow_id, rec))
    s.history[rec.op_id] = winner
    return winner


def peek(call: str) -> tuple[RunState, str, StepRecord | None]:
    """The id the current scope's next operation would take, and its record, without
    taking it (the scope's counter does not move). `ctx.patched` decides from this
    whether it occupies the id."""
    _refuse_in_step(call)
    s, scope, _ = current()
    if s.unwinding is not None:
        raise s.unwinding
    op_id = scope.peek()
    return s, op_id, s.history.get(op_id)


def _refuse_in_step(call: str) -> None:
    inside = in_step.get()
    if inside is not None:
        raise WorkflowContextError(
            f"ctx.{call} was called inside step {inside!r}: a step function is one side "
            "effect and cannot make durable calls; call it from the workflow function"
        )


async def enter(call: str) -> tuple[RunState, str, StepRecord | None]:
    """Take the next operation id of the current scope: (run, id, its record if this
    is a replay). Delivers a pending cancel, the execution timeout and a lost lease
    first."""
    _refuse_in_step(call)
    s, scope, frame = current()
    if s.unwinding is not None:
        raise s.unwinding
    if s.past_deadline():
        unwind(s, ExecutionTimedOut())
    op_id = scope.take()
    rec = s.history.get(op_id)
    if rec is None and s.read_only and op_id not in s.recorded_scopes:
        await stop_replay(s, op_id)
    if rec is not None and rec.kind == StepKind.CANCEL:
        _delivered(s, frame)
        raise WorkflowCancelledError(rec.result or "cancelled")
    if rec is None and s.cancel_requested is not None and not frame.cancel_delivered:
        winner = await _record_cancel(s, op_id)
        if winner.kind == StepKind.CANCEL:
            _delivered(s, frame)
            raise WorkflowCancelledError(s.cancel_requested)
        rec = winner  # another writer recorded this id first: replay it
    return s, op_id, rec


def _delivered(s: RunState, frame: TaskFrame) -> None:
    frame.cancel_delivered = True
    s.cancel_delivered = True


async def _record_cancel(s: RunState, op_id: str) -> StepRecord:
    marker = StepRecord(
        op_id,
        "cancel",
        StepKind.CANCEL,
        s.epoch,
        s.clock.now_ms(),
        result=s.cancel_requested,
        resolved=True,
    )
    return await record(s, marker)


async def deliver_cancel_here() -> typing.NoReturn:
    """A cancel reached a parked branch: record it at the branch's next id (a
    replay parks there again and meets the marker) and raise it."""
    s, scope, frame = current()
    op_id = scope.take()
    rec = s.history.get(op_id)
    if rec is None or rec.kind != StepKind.CANCEL:
        rec = await _record_cancel(s, op_id)
    _delivered(s, frame)
    raise WorkflowCancelledError(rec.result or s.cancel_requested or "cancelled")


def check(s: RunState, rec: StepRecord, kind: StepKind, name: str) -> None:
    if rec.kind != kind or rec.name != name:
        unwind(
            s,
            NonDeterminismError(
                f"replay of run {s.workflow_id} reached {kind.value} {name!r} at operation "
                f"{rec.op_id}, but the history records {rec.kind.value} {rec.name!r} there; "
                "the workflow code changed under a running workflow or is not deterministic"
            ),
        )


def refuse_park_after_cancel() -> None:
    _, _, frame = current()
    if frame.cancel_delivered:
        raise WorkflowContextError(
            "the run was cancelled: cleanup can run steps, but cannot sleep or wait for signals"
        )


async def wait_parked(
    op_id: str,
    *,
    wake_at: int | None,
    signal: str | None = None,
    seq: int = 0,
    seen_seq: int | None = None,
) -> str:
    """Block this branch until its wake time (WAKE), until a signal may have come in
    (RECHECK), or until the run parks (Suspend is raised). A cancel requested
    meanwhile is delivered here."""
    refuse_park_after_cancel()
    s, _, frame = current()
    if s.cancel_requested is not None and not frame.cancel_delivered:
        await deliver_cancel_here()
    key = s.parker.add(op_id, wake_at, signal, seq, s.signal_seq if seen_seq is None else seen_seq)
    try:
        outcome = await s.parker.requests[key].future
    finally:
        s.parker.remove(key)
    if outcome == CANCEL:
        await deliver_cancel_here()
    return outcome


def started(s: RunState, kind: StepKind, op_id: str, name: str) -> None:
    """An operation starts for real (not a replay of its record): the plugins'
    `operation_start` (worker/plugins.py)."""
    if s.hooks and s.hooks.has("operation_start"):
        s.hooks.call("operation_start", _operation(s, kind, op_id, name))


def ended(s: RunState, rec: StepRecord) -> StepRecord:
    """This worker recorded `rec`, an operation's outcome: the plugins' `operation_end`."""
    if s.hooks and s.hooks.has("operation_end") and rec.resolved:
        status = "failed" if rec.error is not None else "succeeded"
        s.hooks.call(
            "operation_end", _operation(s, rec.kind, rec.op_id, rec.name), status, rec.error
        )
    return rec


def replayed(s: RunState, rec: StepRecord) -> None:
    """A recorded outcome returned on replay: the plugins' `operation_replayed`."""
    if s.hooks and s.hooks.has("operation_replayed"):
        s.hooks.call("operation_replayed", _operation(s, rec.kind, rec.op_id, rec.name))


def _operation(s: RunState, kind: StepKind, op_id: str, name: str) -> Operation:
    return Operation(s.workflow_id, s.name, kind.value, op_id, name)


def replaying(s: RunState, scope: Scope) -> bool:
    return scope.peek() in s.history
