"""What one claim of a run knows, and the internal exceptions that unwind a
workflow coroutine. Internal to the worker."""

from __future__ import annotations

import asyncio
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
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


class Claim(StrEnum):
    """Where one claim of a run stands. The runner, the heartbeat and the run's
    own tasks all move it, and only through `RunState.close`, `reopen` and
    `lose`, along `CLAIM_MOVES`:

    - RUNNING: the owner runs the workflow; its heartbeat extends the lease.
    - CLOSING: a park or a terminal write is in flight. Heartbeats stop (one
      landing after the write could extend a lease the write gave up), and a
      heartbeat refused meanwhile is the write's own doing, not a lost lease.
      A refused park that may go on (a signal or a cancel arrived since the
      look) reopens the claim.
    - LOST: the lease is gone (a refused write or heartbeat, an expired lease, a
      store that stayed unavailable), or the claim gave up. Nothing more is
      written under it; final.
    """

    RUNNING = "running"
    CLOSING = "closing"
    LOST = "lost"


CLAIM_MOVES: dict[Claim, frozenset[Claim]] = {
    Claim.RUNNING: frozenset({Claim.CLOSING, Claim.LOST}),
    Claim.CLOSING: frozenset({Claim.RUNNING, Claim.LOST}),
    Claim.LOST: frozenset(),
}


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
    run_attempt: int = 0  # the run's redrive count: every record this claim writes carries it
    deadline_at: int | None = None
    cancel_requested: str | None = None  # reason, once the owner learned of a cancel
    parent_id: str | None = None  # a child run (ctx.invoke): its parent, told of its end
    parent_op: str | None = None
    parent_polls: bool = False  # a distributed map's child: nobody to notify
    cancel_delivered: bool = False  # to at least one task: the run ends as cancelled
    root: Scope = field(default_factory=lambda: Scope(""))
    claim: Claim = Claim.RUNNING  # moved only by close(), reopen() and lose()
    timed_out: bool = False
    unwinding: BaseException | None = None  # the Suspend/LeaseLost/... in progress
    # A write refused for good that gave the claim up (a park): the runner counts it
    # on the run instead of leaving the claim (worker/_claim_failures.py).
    failure: BaseException | None = None
    executed_steps: int = 0
    timers: list[str] = field(default_factory=list)
    executor: Executor | None = None  # runs sync step functions
    hooks: Any = None  # plugins.Hooks: the worker's plugins
    # How the claim ended, for the plugins' invocation_end: a terminal status,
    # "parked", "continued" or "released" (None: lost, or an error).
    ended: str | None = None
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

    @property
    def lost(self) -> bool:
        return self.claim is Claim.LOST

    @property
    def closing(self) -> bool:
        return self.claim is Claim.CLOSING

    def _move(self, to: Claim) -> None:
        if to is not self.claim and to not in CLAIM_MOVES[self.claim]:
            raise AssertionError(f"run {self.workflow_id}: claim {self.claim} cannot become {to}")
        self.claim = to

    def close(self) -> None:
        """A park or terminal write starts (a lost claim stays lost: the write
        that follows is refused)."""
        if not self.lost:
            self._move(Claim.CLOSING)

    def reopen(self) -> None:
        """A refused park goes on running (a signal or cancel came first); a claim
        lost meanwhile stays lost."""
        if not self.lost:
            self._move(Claim.RUNNING)

    def lose(self) -> None:
        self._move(Claim.LOST)

    def lease_valid(self) -> bool:
        return not self.lost and self.clock.now_ms() < self.lease_until - self.lease_ms // 6

    def check_lease(self) -> None:
        if not self.lease_valid():
            self.lose()
            raise LeaseLost()

    def past_deadline(self) -> bool:
        return self.deadline_at is not None and self.clock.now_ms() >= self.deadline_at


def duration_ms(value: timedelta | float | int) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return int(seconds * 1000)


def error_info(exc: BaseException) -> ErrorInfo:
    recorded = getattr(exc, "recorded_info", None)
    if isinstance(recorded, ErrorInfo):  # a recorded failure raised again on replay
        return recorded
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > MAX_ERROR_BYTES:
        tb = "…" + tb[-(MAX_ERROR_BYTES - 1000) :]
    return ErrorInfo(type=type(exc).__qualname__, message=str(exc)[:4000], traceback=tb)
