"""The run's state machine and the records the store keeps, as plain data.

Pure: standard library only. The allowed moves are data (`TRANSITIONS`), and
every conditional write in the store asks DynamoDB to enforce one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PENDING = "pending"  # runnable, waiting for a worker
    RUNNING = "running"  # a worker holds the lease
    SLEEPING = "sleeping"  # parked until wake_at
    WAITING = "waiting"  # parked until a signal (or its timeout, wake_at)
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
PARKED = frozenset({Status.SLEEPING, Status.WAITING})

# Every move a run may make, by the event that makes it. A terminal status has
# no way out: invariant 5 ("terminal is final").
TRANSITIONS: dict[str, dict[Status, Status]] = {
    # claim: a worker takes the lease (pending; running with an expired lease;
    # a sleeper or a timed wait whose wake time has passed)
    "claim": {
        Status.PENDING: Status.RUNNING,
        Status.RUNNING: Status.RUNNING,
        Status.SLEEPING: Status.RUNNING,
        Status.WAITING: Status.RUNNING,
    },
    "sleep": {Status.RUNNING: Status.SLEEPING},
    "wait": {Status.RUNNING: Status.WAITING},
    "signal_wakes": {Status.WAITING: Status.PENDING},
    "complete": {Status.RUNNING: Status.COMPLETED},
    "fail": {Status.RUNNING: Status.FAILED},
    "release": {Status.RUNNING: Status.RUNNING},  # lease dropped, run stays runnable
    "cancel": {
        Status.PENDING: Status.CANCELLED,
        Status.SLEEPING: Status.CANCELLED,
        Status.WAITING: Status.CANCELLED,
        Status.RUNNING: Status.CANCELLED,
    },
    # expire: the sweeper fails a run no worker holds once its execution deadline
    # has passed (a running run's owner enforces the deadline itself)
    "expire": {
        Status.PENDING: Status.FAILED,
        Status.SLEEPING: Status.FAILED,
        Status.WAITING: Status.FAILED,
    },
}


class TransitionError(ValueError):
    pass


def transition(event: str, status: Status) -> Status:
    """The status after `event`, or TransitionError if the move is not allowed."""
    moves = TRANSITIONS.get(event)
    if moves is None:
        raise TransitionError(f"unknown event {event!r}")
    if status not in moves:
        raise TransitionError(f"{event} is not allowed from {status}")
    return moves[status]


# --- Names -------------------------------------------------------------------------------
WORKFLOW_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
WORKFLOW_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SIGNAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
STEP_NAME_RE = re.compile(r"^[^\x00-\x1f]{1,200}$")

# --- Size limits (bytes of JSON text). A run record holds input + output + error and
# must stay under DynamoDB's 400 KB item limit; a signal or a step outcome is its
# own item. Over a limit the boundary refuses with PayloadTooLargeError.
MAX_INPUT_BYTES = 128 * 1024
MAX_OUTPUT_BYTES = 128 * 1024
MAX_STEP_RESULT_BYTES = 256 * 1024
MAX_SIGNAL_PAYLOAD_BYTES = 64 * 1024
MAX_ERROR_BYTES = 32 * 1024


class StepKind(StrEnum):
    STEP = "step"
    SLEEP = "sleep"
    WAIT = "wait"
    CANCEL = "cancel"  # where a cancel was delivered, so a replay delivers it at the same point


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


@dataclass(frozen=True)
class Run:
    """A workflow run's record. Times are epoch milliseconds."""

    id: str
    name: str
    status: Status
    input: str  # JSON text
    created_at: int
    updated_at: int
    epoch: int = 0
    signal_seq: int = 0
    owner: str | None = None
    lease_until: int | None = None
    wake_at: int | None = None
    wait_signal: str | None = None
    due_at: int | None = None
    output: str | None = None  # JSON text
    error: ErrorInfo | None = None
    dispatches: int = 0  # sweeper re-sends so far (backoff)
    deadline_at: int | None = None  # execution timeout: the run fails as timed out after this
    cancel_requested: str | None = None  # the reason, once a cancel reached a running run
    timer: str | None = None  # name of the schedule that will wake a parked run, if any
    traceparent: str | None = None  # W3C trace context of the start request, if the caller sent one
    task_queue: str | None = None  # the task queue its messages go to (None: "default")


@dataclass(frozen=True)
class StepRecord:
    """One durable call at one position of a run: a step's outcome, a sleep's
    wake time, or a signal wait's deadline and (once known) outcome."""

    position: int
    name: str
    kind: StepKind
    epoch: int  # the writer's lease epoch (for audits; step writes are first-write-wins)
    recorded_at: int
    result: str | None = None  # JSON text of a step's result or a signal's payload
    error: ErrorInfo | None = None
    started_at: int | None = None
    wake_at: int | None = None  # sleep: fixed wake time; wait: deadline (None = no timeout)
    signal: str | None = None  # wait: the signal name
    resolved: bool = False  # outcome known: a step's result/error, a wait's signal or timeout
    timed_out: bool = False
    signal_seq: int | None = None  # wait: which signal was consumed
    attempts: list[dict[str, Any]] = field(
        default_factory=list
    )  # step: attempts, when more than one
    retry_at: int | None = None  # step between attempts: when the next attempt may start


@dataclass(frozen=True)
class Signal:
    name: str
    seq: int
    payload: str  # JSON text
    sent_at: int
    consumed: bool = False


# --- Schedules -----------------------------------------------------------------------------
# A schedule's name is also an EventBridge Scheduler schedule name (64 of
# [0-9a-zA-Z-_.]) and part of its runs' ids: "sched-<name>-<tick>".
SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
SCHEDULE_RUN_PREFIX = "sched-"
TASK_QUEUE_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")  # part of SQS queue names
DEFAULT_TASK_QUEUE = "default"  # = resources.DEFAULT_TASK_QUEUE (the model imports nothing)
RECENT_DECISIONS = 5  # decisions kept on the schedule item (about 90 bytes each)


class Overlap(StrEnum):
    """What a tick does while the schedule's previous run is not finished."""

    SKIP = "skip"  # the tick is skipped (the default)
    BUFFER_ONE = "buffer_one"  # one tick waits and starts when the previous run ends
    ALLOW_ALL = "allow_all"  # every tick starts, runs overlap


class TickOutcome(StrEnum):
    STARTED = "started"
    ALREADY_STARTED = "already_started"  # the tick's run exists (a second fire, a backfill)
    SKIPPED = "skipped"  # overlap: the previous run is still going
    BUFFERED = "buffered"  # overlap buffer_one: starts when the previous run ends
    MISSED = "missed"  # fired later than the catch-up window allows
    PAUSED = "paused"
    DUPLICATE = "duplicate"  # a tick at or before the last one decided: decided already
    NOT_FOUND = "not_found"  # the schedule was deleted


def schedule_run_id(schedule: str, tick_ms: int) -> str:
    """`sched-<schedule>-<tick>`, the tick in UTC in ISO 8601's basic format, whole
    seconds (`sched-nightly-20261126T020000Z`). The basic format has no ':', so an
    id needs no escaping in a URL path or a shell; every character fits
    WORKFLOW_ID_RE. A tick's id is the same whoever fires it, so a tick starts at
    most one run."""
    from datetime import UTC, datetime

    tick = datetime.fromtimestamp(tick_ms // 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{SCHEDULE_RUN_PREFIX}{schedule}-{tick}"


@dataclass(frozen=True)
class Schedule:
    """A recurring schedule's definition and its decision state. Times are epoch ms.

    `version` is bumped by every decision, so concurrent fires of one schedule (a
    duplicate delivery, a trigger, the sweeper's catch-up) decide one at a time.
    """

    name: str
    workflow: str
    input: str  # JSON text
    expression: str  # cron(...) or rate(...)
    timezone: str
    overlap: Overlap
    catchup_window_s: int
    created_at: int
    updated_at: int
    anchor_at: int  # rate(...) ticks are anchor + k * rate
    task_queue: str | None = None
    paused: bool = False
    note: str | None = None
    version: int = 0
    last_tick: int | None = None  # the newest scheduled tick decided
    last_run: str | None = None  # the run started last (overlap is decided against it)
    buffered: int | None = None  # buffer_one: the tick waiting for last_run to end
    recent: list[dict[str, Any]] = field(default_factory=list)  # newest first
