"""The run's state machine and the records the store keeps, as plain data.

Pure: standard library only. The allowed moves are data (`TRANSITIONS`, shown
in docs/architecture.md). DynamoDB enforces them: each event is a conditional
write in `store/requests.py` whose condition admits exactly the statuses the
table lists for it; the sweeper's `past_deadline` reads the "expire" row.
tests/functional/test_state_machine.py drives every event from every status
through that code and holds it to this table.
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
    # claim_failed: a claim ended by a non-transient error is counted on the run,
    # which keeps the lease for a backoff (worker/_claim_failures.py); at the limit
    # the owner fails the run instead ("fail")
    "claim_failed": {Status.RUNNING: Status.RUNNING},
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


# Operator actions that reopen a finished run (invariant 5 holds for everything a
# run does by itself; these are explicit requests, each one conditional write).
RECOVERY: dict[str, dict[Status, Status]] = {
    # redrive: a failed (timed-out included) or cancelled run runs again under its id
    "redrive": {Status.FAILED: Status.PENDING, Status.CANCELLED: Status.PENDING},
}


# --- Names -------------------------------------------------------------------------------
WORKFLOW_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
WORKFLOW_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
SIGNAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
# Signal names the engine uses itself (a child run's end, a callback's completion)
# start with this; a user's signal may not.
RESERVED_SIGNAL_PREFIX = "sys:"
STEP_NAME_RE = re.compile(r"^[^\x00-\x1f]{1,200}\Z")
BUILD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}\Z")
BUILD_ID_HELP = "a build id is 1 to 64 of letters, digits, '_', '.', ':', '+' or '-'"
VERSIONING = ("auto", "pinned")  # @workflow(versioning=...): "auto" runs on any build

# --- Size limits (bytes of JSON text). A run record holds input + output + error and
# must stay under DynamoDB's 400 KB item limit; a signal or a step outcome is its
# own item. Over a limit the boundary refuses with PayloadTooLargeError.
# Values a worker writes (step, child-context and batch results, workflow outputs)
# go through the claim-check codec (orchestrator/payloads.py): above the offload
# threshold the record keeps a pointer to an S3 object, so their limit is S3's
# practical one for a single PUT held in memory, not DynamoDB's.
MAX_VALUE_BYTES = 100 * 1024 * 1024
MAX_INPUT_BYTES = 128 * 1024  # the HTTP API's (API Gateway and Lambda bound a request)
MAX_OUTPUT_BYTES = MAX_VALUE_BYTES
MAX_STEP_RESULT_BYTES = MAX_VALUE_BYTES
MAX_SIGNAL_PAYLOAD_BYTES = 64 * 1024
# A run's inbox: the signals it holds that no wait has consumed yet. Counted on the
# run item (`Run.inbox_count`, `Run.inbox_bytes`: payload bytes of JSON text) and
# checked by the signal's own conditional write, so concurrent senders cannot pass
# it. A signal from the API past either limit is refused with 429 (InboxFullError):
# the run takes more once it consumes some. The engine's own signals (a child's
# end, a callback's completion) count too but are never refused: one operation
# sends at most one. 1,000 signals is far more than a workflow waiting on events
# keeps queued; 1 MB is sixteen signals of the largest payload.
MAX_INBOX_SIGNALS = 1_000
MAX_INBOX_BYTES = 1024 * 1024
# A page of a run's records, inbox or history (`?limit=`): items by default and at
# most. A page is also cut by bytes (orchestrator/api/pages.py).
DEFAULT_PAGE_ITEMS = 100
MAX_PAGE_ITEMS = 1_000
# Items of an inline map (ctx.map with fn): each is a task of the run, in one
# worker's memory, and the map's decision record lists them all. 10,000 items
# take a few seconds of a worker; past it, the map is refused before any work
# (a distributed map, ctx.map(..., workflow=...), spreads items over workers).
MAX_INLINE_MAP_ITEMS = 10_000
MAX_ERROR_BYTES = 32 * 1024

# Batched checkpoints (`@workflow(..., checkpoint="batched")`, `ctx.map(...,
# checkpoint="batched")`): step results are buffered and written several to an
# item. An item's entries stay under BATCH_MAX_BYTES: well under DynamoDB's
# 400 KB item limit whatever the attribute overhead, and big enough that the
# fixed part of a flush (its fencing condition check) is a few percent of it;
# beyond that a larger item saves nothing, since write units are paid per KB.
CHECKPOINT_MODES = ("each", "batched")
BATCH_MAX_BYTES = 64 * 1024
# A run's terminal write carries its last batch (`Run.last_batch`) only while the
# run item's values (input, output, error) and the batch stay under this, which
# leaves 100 KB of the item for every other attribute; otherwise it flushes first.
LAST_BATCH_ITEM_BUDGET = 300 * 1024
DEFAULT_CHECKPOINT_FLUSH_MS = 1000

# Claims that fail before the run can go on (a value gone from S3, an input model
# that cannot be built, ...): after this many claims in a row ended by the same
# non-transient error, the worker fails the run with it (`ClaimFailure`). The
# claims between wait 1 s, 2 s, 4 s, ... (at most CLAIM_RETRY_MAX_MS).
DEFAULT_CLAIM_FAILURE_LIMIT = 5
MAX_CLAIM_FAILURE_LIMIT = 100
# How long a worker's event loop may be held (by a workflow's own code between its
# durable calls) before the worker stops renewing its leases (worker/_heartbeats.py).
DEFAULT_LOOP_STALL_SECONDS = 120
MAX_LOOP_STALL_SECONDS = 86_400
CLAIM_RETRY_MAX_MS = 60_000


class StepKind(StrEnum):
    STEP = "step"
    SLEEP = "sleep"
    WAIT = "wait"
    CANCEL = "cancel"  # where a cancel was delivered, so a replay delivers it at the same point
    CONTEXT = "context"  # run_in_child_context: the scope's result, recorded as one unit
    PARALLEL = "parallel"  # a batch of branches: the recorded decision and per-index outcomes
    MAP = "map"  # a batch over items: as parallel
    BRANCH = "branch"  # one branch or item of a batch: its outcome
    INVOKE = "invoke"  # a child run: started, then its outcome once it ended
    CALLBACK = "callback"  # create_callback: its token, deadline and (once known) completion
    CONDITION = "condition"  # wait_for_condition: the final state, recorded as one unit
    PATCH = "patch"  # ctx.patched / deprecate_patch: this run took the patched code path


# --- Operation ids ----------------------------------------------------------------------
# An operation's id is its parent scope's id plus the parent's counter: "3" is the
# root scope's fourth operation, "3.1.0" the first operation of branch 1 of the
# batch at "3", "t0.2" the third operation of the first task the workflow created
# itself. Ids are fixed when an operation starts, never when it finishes.
def op_parent(op_id: str) -> str | None:
    """The id of the scope that holds `op_id` ("3.1.0" -> "3.1"), None at the root."""
    head, sep, _ = op_id.rpartition(".")
    return head if sep else None


def child_run_id(parent_id: str, op_id: str) -> str:
    """The id of the child run that operation `op_id` of run `parent_id` starts:
    deterministic, so a replay or a duplicate never starts two. Readable when it
    fits the id pattern's 128 characters, else a hash of both."""
    readable = f"{parent_id}-{op_id}"
    if len(readable) <= 128:
        return readable
    import hashlib

    return "child-" + hashlib.sha256(readable.encode()).hexdigest()[:48]


def child_signal(op_id: str) -> str:
    """The engine's own signal that tells a parent its child at `op_id` ended."""
    return f"{RESERVED_SIGNAL_PREFIX}child:{op_id}"


MAX_GENERATION = 999_999_999  # the largest continue-as-new generation a request may name


def generation_scope(generation: int) -> str:
    """The root scope of a continue-as-new generation: "" for the first (its ids
    are "0", "1", ... as always), "~g" for generation g > 0 (ids "~g.0", ...), so
    each generation's records have their own sort-key prefix and a claim's Query
    loads only the current one."""
    return f"~{generation}" if generation > 0 else ""


def op_sort_key(op_id: str) -> str:
    """The sort-key form of an id: numeric parts padded to six digits so that a
    Query returns a run's operations in creation order within each scope. A root
    id is exactly the key of the flat positions written before ids had parts."""
    parts = []
    for part in op_id.split("."):
        if part.isdigit():
            parts.append(f"{int(part):06d}")
        else:  # a task scope "t<k>", a generation "~<g>"
            parts.append(f"{part[0]}{int(part[1:]):05d}")
    return ".".join(parts)


def op_from_sort_key(key: str) -> str:
    parts = []
    for part in key.split("."):
        parts.append(str(int(part)) if part.isdigit() else f"{part[0]}{int(part[1:])}")
    return ".".join(parts)


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


@dataclass(frozen=True)
class ClaimFailure:
    """The error that ended the run's latest claims before the run could go on,
    and how many claims in a row it ended (`Run.claim_failure`)."""

    type: str
    message: str
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "count": self.count}


def next_claim_failure(
    previous: ClaimFailure | None, error: ErrorInfo, limit: int
) -> tuple[ClaimFailure, bool]:
    """(what a claim that `error` ended records, whether the run fails now). The
    count goes on only while the error is of the same type; another type starts
    it again at 1. The type alone, not the message, names the cause: a message
    may differ from one claim to the next (an object's address, a request id),
    and the run must not loop forever for it. The latest message is kept. Pure."""
    same = previous is not None and previous.type == error.type
    count = previous.count + 1 if same and previous is not None else 1
    return ClaimFailure(error.type, error.message, count), count >= limit


def claim_retry_ms(count: int) -> int:
    """How long the run waits before the next claim after `count` failed ones in a
    row: 1 s, 2 s, 4 s, ..., at most CLAIM_RETRY_MAX_MS."""
    return min(1000 * 2 ** min(max(count, 1) - 1, 16), CLAIM_RETRY_MAX_MS)


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
    wait_signal: str | None = None  # the signal names a waiting run waits for, comma-joined
    due_at: int | None = None
    output: str | None = None  # JSON text
    error: ErrorInfo | None = None
    dispatches: int = 0  # sweeper re-sends so far (backoff)
    deadline_at: int | None = None  # execution timeout: the run fails as timed out after this
    cancel_requested: str | None = None  # the reason, once a cancel reached a running run
    timer: str | None = None  # name of the schedule that will wake a parked run, if any
    traceparent: str | None = None  # W3C trace context of the start request, if the caller sent one
    parent_id: str | None = None  # a child run (ctx.invoke): the parent run's id
    parent_op: str | None = None  # ... and the operation id in the parent that started it
    parent_notified: bool = False  # a child run's end was delivered to its parent
    parent_polls: bool = False  # a distributed map's child: the parent polls, nobody notifies
    tags: dict[str, str] = field(default_factory=dict)  # custom fields set at start: list by tag
    redrive_count: int = 0  # redrives so far
    outcomes: tuple[dict[str, Any], ...] = ()  # earlier outcomes, one per redrive, oldest first
    forked_from: dict[str, str] | None = None  # {"id", "operation"} of the run it was forked from
    generation: int = 0  # continue-as-new: which history is current
    build_id: str | None = None  # the build id of the worker that first claimed the run
    task_queue: str | None = None  # the task queue its messages go to (None: "default")
    pinned: bool = False  # versioning="pinned": only workers of `build_id` claim it
    # Batched checkpoints: the results a run had not yet written when it ended, which
    # its terminal write carried (`codec.last_batch_text`); read with its history.
    last_batch: str | None = None
    # The non-transient error that ended the latest claims, counted (the worker fails
    # the run at `Settings.claim_failure_limit`); removed by a park, a continue-as-new
    # and the terminal write.
    claim_failure: ClaimFailure | None = None
    # The inbox: signals stored and not consumed, and their payloads' bytes, counted
    # for the current run attempt (the terminal write and a redrive remove both).
    inbox_count: int = 0
    inbox_bytes: int = 0

    @property
    def route(self) -> str | None:
        """The queue key its messages go to: its task queue, or, once pinned,
        "<task queue>@<build id>" (`resources.pinned_queue_key`)."""
        if self.pinned and self.build_id:
            return f"{self.task_queue or DEFAULT_TASK_QUEUE}@{self.build_id}"
        return self.task_queue

    @property
    def wait_signals(self) -> tuple[str, ...]:
        """Every signal name the parked run waits for (several when branches wait).
        Signal names cannot hold a comma, so the stored form is the names joined by one."""
        return tuple(self.wait_signal.split(",")) if self.wait_signal else ()


@dataclass(frozen=True)
class StepRecord:
    """One durable operation of a run, at its operation id: a step's outcome, a
    sleep's wake time, a signal wait's deadline and (once known) outcome, a child
    context's or a batch's result."""

    op_id: str
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
    replay_children: bool = False  # context/branch: result too large to keep; replay re-runs it
    callback_id: str | None = None  # callback: the token the outside system completes it with
    # The run attempt (the run's redrive count) the record belongs to: its writer's,
    # or the redrive's that carried it over. A reader ignores records of an earlier
    # attempt (a stale owner's late write after a redrive); 0 is not stored.
    run_attempt: int = 0

    @property
    def parent_id(self) -> str | None:
        return op_parent(self.op_id)


@dataclass(frozen=True)
class Signal:
    name: str
    seq: int
    payload: str  # JSON text
    sent_at: int
    consumed: bool = False
    # The run attempt (redrive count) whose inbox counters hold it, and the bytes it
    # counts for: its consumption in that attempt takes both back. None: a signal
    # stored before the inbox was counted, never counted.
    attempt: int | None = None
    size: int = 0


def inbox_refusal(workflow_id: str, count: int, nbytes: int, size: int) -> str | None:
    """Why run `workflow_id`'s inbox, holding `count` signals of `nbytes` bytes,
    has no room for a signal of `size` bytes (None: it has). Names the limit and
    its value; the caller answers 429 (`errors.InboxFullError`)."""
    if count >= MAX_INBOX_SIGNALS:
        return (
            f"the inbox of run {workflow_id!r} is full: it holds {count:,} unconsumed "
            f"signals, its limit (MAX_INBOX_SIGNALS) is {MAX_INBOX_SIGNALS:,}; "
            "send again once the run has consumed some"
        )
    if nbytes + size > MAX_INBOX_BYTES:
        return (
            f"the inbox of run {workflow_id!r} is full: its unconsumed signals hold "
            f"{nbytes:,} bytes of payload, and this one's {size:,} bytes would pass its "
            f"limit (MAX_INBOX_BYTES) of {MAX_INBOX_BYTES:,} bytes; "
            "send again once the run has consumed some"
        )
    return None


TAG_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}\Z")
MAX_TAGS = 10
# The names one worker serves: the claim's condition lists them (`IN` takes at
# most 100 values, one of which the condition uses for itself).
MAX_WORKER_NAMES = 99
# --- Schedules -----------------------------------------------------------------------------
# A schedule's name is also an EventBridge Scheduler schedule name (64 of
# [0-9a-zA-Z-_.]) and part of its runs' ids: "sched-<name>-<tick>".
SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
SCHEDULE_RUN_PREFIX = "sched-"
TASK_QUEUE_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}\Z")  # part of SQS queue names
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
    resumed_at: int | None = None  # the last resume: ticks before it fell in a pause
    version: int = 0
    last_tick: int | None = None  # the newest scheduled tick decided
    last_run: str | None = None  # the run started last (overlap is decided against it)
    buffered: int | None = None  # buffer_one: the tick waiting for last_run to end
    recent: list[dict[str, Any]] = field(default_factory=list)  # newest first
