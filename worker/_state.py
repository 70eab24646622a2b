"""What one claim of a run knows, and the internal exceptions that unwind a
workflow coroutine. Internal to the worker."""

from __future__ import annotations

import asyncio
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from orchestrator.clock import Clock
from orchestrator.model import MAX_ERROR_BYTES, ErrorInfo, StepRecord

from ._scope import Scope
from ._store_api import RunStore


class Suspend(BaseException):
    """The run parked (sleep, wait, long retry delay); the worker frees the slot."""


class LeaseLost(BaseException):
    """Another worker owns the run now (or the run moved). The worker abandons it."""


class StoreUnavailable(LeaseLost):
    """A durable call's request failed after the SDK's own retries (throttling,
    a 5xx, a connection error, a lost response). It must not reach workflow code
    as an ordinary exception (that would fail the run, or be swallowed by an
    `except Exception`): the worker abandons this claim like a lost lease and
    writes nothing more; the run resumes when its lease expires and its message
    comes back."""


class ReadOnlyReplayError(BaseException):
    """A replay check reached code that would run a step function or write (a
    safety net: the check stops every branch at its first unrecorded operation)."""


class ContinueAsNew(BaseException):
    """`ctx.continue_as_new`: the run ends its history and goes on, under its id,
    with a fresh one and this input (JSON text)."""

    def __init__(self, input_text: str) -> None:
        super().__init__("continue as new")
        self.input_text = input_text


class ExecutionTimedOut(BaseException):
    """The run's execution timeout passed; the run fails."""


@dataclass
class RunState:
    """`lease_until` is the owner's own view of its lease: no step is recorded
    after it (a write after another claim could win a position; first-write-wins
    keeps that harmless, this keeps it rare)."""

    workflow_id: str
    name: str
    epoch: int
    signal_seq: int
    lease_until: int
    history: dict[str, StepRecord]
    store: RunStore
    clock: Clock
    lease_ms: int
    generation: int = 0  # continue-as-new: which history this claim writes
    deadline_at: int | None = None
    cancel_requested: str | None = None  # reason, once the owner learned of a cancel
    parent_id: str | None = None  # a child run (ctx.invoke): its parent, told of its end
    parent_op: str | None = None
    parent_polls: bool = False  # a distributed map's child: nobody to notify
    cancel_delivered: bool = False  # to at least one task: the run ends as cancelled
    root: Scope = field(default_factory=lambda: Scope(""))
    lost: bool = False
    timed_out: bool = False
    closing: bool = False  # a park or terminal write is under way: heartbeats stop
    unwinding: BaseException | None = None  # the Suspend/LeaseLost/... in progress
    executed_steps: int = 0
    timers: list[str] = field(default_factory=list)
    executor: Executor | None = None  # runs sync step functions
    metrics: Any = None  # WorkerMetrics
    tracing: Any = None  # Tracing
    step_slots: asyncio.Semaphore | None = None  # the worker's cap on step functions at once
    busy: int = 0  # durable calls in flight (step functions, store requests, retry delays)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # the run's asyncio tasks
    parker: Any = None  # _parking.Parker, made when the run starts
    checkpoints: Any = None  # _checkpoints.Checkpoints: step results not yet written
    # A replay check (worker/_replay.py): nothing runs or is written; a branch that
    # reaches an operation with no record stops there (its id goes to `frontier`).
    read_only: bool = False
    frontier: list[str] = field(default_factory=list)
    recorded_scopes: set[str] = field(default_factory=set)  # ids with records under them

    def track(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        if self.parker is not None:
            self.parker.poke()
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if self.parker is not None:
            self.parker.poke()

    def enter_busy(self) -> None:
        self.busy += 1

    def leave_busy(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self.parker is not None:
            self.parker.poke()

    def lease_valid(self) -> bool:
        return not self.lost and self.clock.now_ms() < self.lease_until - self.lease_ms // 6

    def check_lease(self) -> None:
        if not self.lease_valid():
            self.lost = True
            raise LeaseLost()

    def past_deadline(self) -> bool:
        return self.deadline_at is not None and self.clock.now_ms() >= self.deadline_at


def duration_ms(value: timedelta | float | int) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return int(seconds * 1000)


def error_info(exc: BaseException) -> ErrorInfo:
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > MAX_ERROR_BYTES:
        tb = "…" + tb[-(MAX_ERROR_BYTES - 1000) :]
    return ErrorInfo(type=type(exc).__qualname__, message=str(exc)[:4000], traceback=tb)
