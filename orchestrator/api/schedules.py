"""Recurring schedules: what the API does with them, independent of HTTP.

A tick becomes a run through `Service.new_run`, the same validation and record
as `POST /workflows`, with the deterministic id `sched-<name>-<tick>`.
Whatever fires a tick (EventBridge Scheduler, a retried delivery, the local
emulator, the sweeper's catch-up, a trigger), the decision is taken against
the schedule item's `version` (see `orchestrator/store/schedules.py`), so:

- a tick starts at most one run (its id is deterministic, and the run's put is
  conditional);
- overlap is decided against the previous run the schedule started, and two
  concurrent deciders cannot both see "no run in flight" and both start.
"""

from __future__ import annotations

import builtins
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BadInputError, ConflictError, NotFoundError
from ..model import (
    SCHEDULE_NAME_RE,
    WORKFLOW_NAME_RE,
    Overlap,
    Schedule,
    Status,
    TickOutcome,
    schedule_run_id,
)
from ..recurring import schedule_request
from ..schedule_expr import UPCOMING, ExpressionError, minute_floor, parse, parse_iso
from ..store.codec import encode_json
from ..store.jobs import Job
from ..store.schedules import ScheduleStore, StartConflict, with_decision
from .models import iso
from .service import Service

log = logging.getLogger(__name__)

MAX_ROUNDS = 20  # a decision that keeps losing to others gives up (then the caller retries)
MAX_BACKFILL_TICKS = 10_000  # per backfill job; the range is checked before it starts
BACKFILL_PAGE = 40  # ticks per page of a backfill job
BACKFILL_THREADS = 8  # ticks started at once within a page
BACKFILL_IDS_KEPT = 1000  # run ids the outcome lists per kind (every tick is counted)
MIN_CATCHUP_S = 60
MAX_CATCHUP_S = 366 * 24 * 3600
DEFAULT_CATCHUP_S = 3600
Source = Literal["schedule", "trigger", "buffer"]


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    workflow: str
    input: Any = None
    expression: str = Field(description='"cron(0 9 ? * MON-FRI *)" or "rate(5 minutes)"')
    timezone: str = "UTC"
    overlap: Overlap = Overlap.SKIP
    catchup_window_seconds: int = Field(
        default=DEFAULT_CATCHUP_S, ge=MIN_CATCHUP_S, le=MAX_CATCHUP_S
    )
    task_queue: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SCHEDULE_NAME_RE.fullmatch(v):
            raise ValueError(
                "must start with a letter and hold at most 64 letters, digits, '_', '.' or '-'"
            )
        return v

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, v: str) -> str:
        if not WORKFLOW_NAME_RE.fullmatch(v):
            raise ValueError(
                "must start with a letter and hold at most 64 letters, digits, '_', '.' or '-'"
            )
        return v


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=1000)


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(description="ISO 8601; a time without an offset is UTC")
    end: str


@dataclass(frozen=True)
class Decision:
    outcome: TickOutcome
    tick: int | None
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "tick": iso(self.tick), "run_id": self.run_id}


def schedule_from_request(req: ScheduleRequest, now: int) -> Schedule:
    """The definition a create request makes at `now` (the API's create and the
    CDK's declared schedules, infra/declared.py). The input is encoded and
    checked against its limit here."""
    return Schedule(
        name=req.name,
        workflow=req.workflow,
        input=encode_json(req.input, what="input", limit=128 * 1024),
        expression=req.expression,
        timezone=req.timezone,
        overlap=req.overlap,
        catchup_window_s=req.catchup_window_seconds,
        task_queue=req.task_queue,
        created_at=now,
        updated_at=now,
        anchor_at=minute_floor(now),
    )


@dataclass
class ScheduleService:
    runs: Service
    store: ScheduleStore
    scheduler: Any  # boto3 EventBridge Scheduler client (None: no Scheduler, tests)

    @property
    def _clock(self) -> Any:
        return self.runs.clock

    # --- definitions --------------------------------------------------------------------
    def create(self, req: ScheduleRequest) -> tuple[Schedule, bool]:
        """Store the definition, then create its Scheduler schedule. Returns
        (schedule, created); the same definition again is not an error (and puts
        the Scheduler schedule in place again, repairing a create that failed
        after the write)."""
        try:
            expr = parse(req.expression, req.timezone)
        except ExpressionError as e:
            raise BadInputError(str(e)) from None
        self.runs.check_task_queue(req.task_queue)
        s = schedule_from_request(req, self._clock.now_ms())
        # Checked before anything is written: a rate whose next fire times cannot
        # be represented (past 9999) would be a schedule no listing can show. (A
        # cron's year field ends in 2199, and a cron may simply fire less.)
        if expr.rate_ms is not None and len(expr.upcoming(s.created_at, s.anchor_at)) < UPCOMING:
            raise BadInputError(
                f"{req.expression} has fewer than {UPCOMING} fire times before "
                "9999-12-31T23:59:59Z, the last time a schedule can have"
            )
        stored, created = self.store.create(s)
        self._put_scheduler(stored)
        return stored, created

    def _put_scheduler(self, s: Schedule) -> None:
        if self.scheduler is None:
            return
        req = schedule_request(self.runs.settings, s, self._clock.now_ms())
        try:
            self.scheduler.create_schedule(**req)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConflictException":
                raise
            self.scheduler.update_schedule(**req)

    def get(self, name: str) -> Schedule:
        _check_name(name)
        return self.store.get(name)

    def list(self) -> builtins.list[Schedule]:
        return sorted(self.store.list(), key=lambda s: s.name)

    def run_statuses(self, schedules: builtins.list[Schedule]) -> dict[str, str]:
        ids = [e["run"] for s in schedules for e in s.recent if e.get("run")]
        return self.store.run_statuses(ids) if ids else {}

    def pause(self, name: str, note: str | None) -> Schedule:
        return self._set_paused(name, True, note)

    def resume(self, name: str, note: str | None) -> Schedule:
        return self._set_paused(name, False, note)

    def _set_paused(self, name: str, paused: bool, note: str | None) -> Schedule:
        _check_name(name)
        s = self.store.set_paused(name, paused=paused, note=note, now=self._clock.now_ms())
        self._put_scheduler(s)  # DISABLED / ENABLED: a paused schedule costs no invocations
        return s

    def delete(self, name: str) -> Schedule:
        """Delete the definition, then the Scheduler schedule. Runs already
        started are left alone. A fire that arrives after the delete finds no
        definition and starts nothing."""
        _check_name(name)
        s = self.store.delete(name)
        if self.scheduler is not None:
            try:
                self.scheduler.delete_schedule(
                    Name=name, GroupName=self.runs.settings.recurring_group
                )
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
        return s

    # --- ticks --------------------------------------------------------------------------
    def trigger(self, name: str) -> Decision:
        """Start a run now (tick = now, to the second), subject to the overlap policy."""
        _check_name(name)
        self.store.get(name)
        now = self._clock.now_ms()
        return self.fire(name, now - now % 1000, source="trigger")

    def backfill(self, name: str, start: str, end: str) -> Job:
        """Start the run of every tick in [start, end] that has none, as a job
        (`api/jobs.py`; `backfill_page` is its page). Idempotent: a tick already
        started (by its schedule, or an earlier backfill) is skipped. Backfilled
        runs start together, whatever the overlap policy. A rate schedule's ticks
        before its anchor count back from it (`Expression.ticks`). A range that
        holds no tick says so (`note`). The range is checked before the job
        starts: at most MAX_BACKFILL_TICKS ticks, none in the future."""
        _check_name(name)
        s = self.store.get(name)
        try:
            lo, hi = parse_iso(start), parse_iso(end)
            if hi < lo:
                raise BadInputError("end is before start")
            if hi > self._clock.now_ms():
                raise BadInputError("end is in the future: backfill starts past ticks only")
            ticks = parse(s.expression, s.timezone).ticks(
                lo, hi, s.anchor_at, limit=MAX_BACKFILL_TICKS
            )
        except ExpressionError as e:
            raise BadInputError(str(e)) from None
        request = {"schedule": name, "start": start, "end": end, "lo": lo, "hi": hi}
        if not ticks:
            request["note"] = f"no tick of {s.expression} ({s.timezone}) falls in [{start}, {end}]"
        request["ticks"] = len(ticks)
        return self.runs.jobs.start("backfill", request, phase="starting")

    def start_tick(self, s: Schedule, tick: int) -> tuple[str, bool]:
        """A backfilled tick's run: (run id, started now?). A tick whose run
        exists, or ran with an input the schedule no longer has, is skipped."""
        run = self._new_run(s, tick)
        try:
            stored, created = self.runs.store.create(run)
        except ConflictError:
            return run.id, False
        if created:
            self.runs.dispatch(run.id, "backfill", run.task_queue)
        return stored.id, created

    def fire(self, name: str, tick: int, *, source: Source = "schedule") -> Decision:
        """Decide one tick: start its run, or skip, buffer, or drop it."""
        for _ in range(MAX_ROUNDS):
            s = self.store.find(name)
            if s is None:
                return Decision(TickOutcome.NOT_FOUND, tick)
            now = self._clock.now_ms()
            prev_open = self._open(s.last_run)
            if s.buffered is not None and not prev_open and not s.paused:
                self._start(s, s.buffered, "buffer", now)
                continue  # decide this tick against the run just started
            run_id = schedule_run_id(name, tick)
            if source == "schedule":
                if s.paused or (s.resumed_at is not None and tick < s.resumed_at):
                    # Paused now, or a late delivery of a tick that fell in a pause.
                    return Decision(TickOutcome.PAUSED, tick)
                if s.last_tick is not None and tick <= s.last_tick:
                    ran = run_id if any(e.get("run") == run_id for e in s.recent) else None
                    return Decision(TickOutcome.DUPLICATE, tick, ran)
                if now - tick > s.catchup_window_s * 1000:
                    if self._record(s, tick, source, TickOutcome.MISSED, now):
                        return Decision(TickOutcome.MISSED, tick)
                    continue
            if s.overlap != Overlap.ALLOW_ALL and prev_open and s.last_run != run_id:
                outcome = (
                    TickOutcome.BUFFERED
                    if s.overlap == Overlap.BUFFER_ONE and s.buffered is None
                    else TickOutcome.SKIPPED
                )
                if self._record(s, tick, source, outcome, now):
                    return Decision(outcome, tick)
                continue
            decided = self._start(s, tick, source, now)
            if decided is not None:
                return decided
        raise ConflictError(f"schedule {name!r} is busy deciding other ticks; retry")

    def start_buffered(self, name: str) -> Decision | None:
        """Start the buffered tick if the run before it has ended (the sweeper's pass)."""
        for _ in range(MAX_ROUNDS):
            s = self.store.find(name)
            if s is None or s.buffered is None or s.paused or self._open(s.last_run):
                return None
            decided = self._start(s, s.buffered, "buffer", self._clock.now_ms())
            if decided is not None:
                return decided
        return None

    def catch_up(self, *, grace_ms: int) -> builtins.list[Decision]:
        """The sweeper's pass over every schedule (one Query): start buffered ticks
        whose previous run ended, and fire the latest tick that nobody fired
        although it is past the grace and within the catch-up window (a schedule
        whose Scheduler delivery was lost, or never created)."""
        out: builtins.list[Decision] = []
        now = self._clock.now_ms()
        for s in self.store.list():
            if s.paused:
                continue
            try:
                if s.buffered is not None:
                    d = self.start_buffered(s.name)
                    if d is not None:
                        out.append(d)
                tick = _latest_missed(s, now, grace_ms)
                if tick is not None:
                    out.append(self.fire(s.name, tick))
            except Exception:
                log.exception("catch-up of schedule %s failed; the next sweep retries", s.name)
        return out

    # --- helpers ------------------------------------------------------------------------
    def _new_run(self, s: Schedule, tick: int) -> Any:
        return self.runs.new_run(
            s.workflow, json.loads(s.input), schedule_run_id(s.name, tick), task_queue=s.task_queue
        )

    def _open(self, run_id: str | None) -> bool:
        if run_id is None:
            return False
        try:
            return not self.runs.store.get(run_id).status.terminal
        except NotFoundError:
            return False

    def _record(
        self, s: Schedule, tick: int, source: Source, outcome: TickOutcome, now: int
    ) -> bool:
        entry = {"tick": tick, "outcome": outcome.value, "source": source, "at": now}
        after = replace(
            s,
            version=s.version + 1,
            updated_at=now,
            recent=with_decision(s, entry),
            last_tick=_newest(s.last_tick, tick) if source == "schedule" else s.last_tick,
            buffered=tick if outcome == TickOutcome.BUFFERED else s.buffered,
        )
        return self.store.decide(after, seen_version=s.version)

    def _start(self, s: Schedule, tick: int, source: Source, now: int) -> Decision | None:
        """None when another decision moved the schedule first (decide again)."""
        run = self._new_run(s, tick)
        entry = {"tick": tick, "run": run.id, "outcome": "started", "source": source, "at": now}
        after = replace(
            s,
            version=s.version + 1,
            updated_at=now,
            last_run=run.id,
            recent=with_decision(s, entry),
            last_tick=_newest(s.last_tick, tick) if source != "trigger" else s.last_tick,
            buffered=None if source == "buffer" else s.buffered,
        )
        try:
            self.store.start(after, run, seen_version=s.version)
        except StartConflict as c:
            if c.decision_moved:
                return None
            # The tick's run exists (a backfill, a trigger in the same second):
            # remember it as the schedule's last run, start nothing.
            entry["outcome"] = TickOutcome.ALREADY_STARTED.value
            if not self.store.decide(
                replace(after, recent=with_decision(s, entry)), seen_version=s.version
            ):
                return None
            if self.runs.store.get(run.id).status == Status.PENDING:
                self.runs.dispatch(run.id, "schedule", run.task_queue)
            return Decision(TickOutcome.ALREADY_STARTED, tick, run.id)
        self.runs.dispatch(run.id, "schedule", run.task_queue)
        return Decision(TickOutcome.STARTED, tick, run.id)


def _newest(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


def _latest_missed(s: Schedule, now: int, grace_ms: int) -> int | None:
    """The newest tick in (max(last decided, created, last resumed, now - window),
    now - grace]: a tick that fell while the schedule was paused is never fired."""
    expr = parse(s.expression, s.timezone)
    floor = max(
        s.last_tick or 0,
        s.created_at - 1,
        s.resumed_at or 0,
        now - s.catchup_window_s * 1000,
    )
    hi = now - grace_ms
    for span in (3600_000, 86_400_000, None):  # look near `hi` first: cheap for frequent ticks
        lo = floor if span is None else max(floor, hi - span)
        t, found = expr.next_tick(lo, s.anchor_at), None
        for _ in range(10_000):
            if t is None or t > hi:
                break
            found = t
            t = expr.next_tick(t, s.anchor_at)
        if found is not None or lo == floor:
            return found
    return None


def _check_name(name: str) -> None:
    if not SCHEDULE_NAME_RE.fullmatch(name):
        raise BadInputError(f"{name!r} is not a valid schedule name")


def schedule_view(s: Schedule, statuses: dict[str, str], now: int) -> dict[str, Any]:
    """The schedule as the API shows it: the definition, the next fire times (none
    while paused) and the latest decisions with their runs' current status."""
    expr = parse(s.expression, s.timezone)
    upcoming = [] if s.paused else [iso(t) for t in expr.upcoming(now, s.anchor_at)]
    recent = []
    for e in s.recent:
        item = {
            "tick": iso(e.get("tick")),
            "outcome": e.get("outcome"),
            "source": e.get("source"),
            "decided_at": iso(e.get("at")),
        }
        if e.get("run"):
            item["run_id"] = e["run"]
            item["status"] = statuses.get(e["run"])
        recent.append(item)
    return {
        "name": s.name,
        "workflow": s.workflow,
        "input": json.loads(s.input),
        "expression": s.expression,
        "timezone": s.timezone,
        "overlap": s.overlap.value,
        "catchup_window_seconds": s.catchup_window_s,
        "task_queue": s.task_queue,
        "state": "paused" if s.paused else "active",
        "note": s.note,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
        "next_fire_times": upcoming,
        "last_run_id": s.last_run,
        "buffered_tick": iso(s.buffered),
        "recent": recent,
    }


def backfill_page(service: Service, job: Job) -> Job:
    """One page of a backfill job: the next BACKFILL_PAGE ticks' runs started."""
    req = job.request
    result = dict(job.state.get("result") or {"schedule": req["schedule"], "ticks": 0})
    result.setdefault("started", [])
    result.setdefault("skipped", [])
    if "note" in req:
        result["note"] = req["note"]
    s = service.schedules.store.get(req["schedule"])
    lo = req["lo"] if job.cursor is None else int(job.cursor) + 1
    try:
        ticks = parse(s.expression, s.timezone).first_ticks(
            lo, req["hi"], s.anchor_at, count=BACKFILL_PAGE
        )
    except ExpressionError as e:
        raise BadInputError(str(e)) from None
    with ThreadPoolExecutor(max_workers=BACKFILL_THREADS) as pool:
        outcomes = list(pool.map(lambda tick: service.schedules.start_tick(s, tick), ticks))
    for run_id, started in outcomes:
        kept = result["started" if started else "skipped"]
        if len(kept) < BACKFILL_IDS_KEPT:
            kept.append(run_id)
    started = sum(1 for _, was_started in outcomes if was_started)
    result["started_count"] = result.get("started_count", 0) + started
    result["skipped_count"] = result.get("skipped_count", 0) + len(outcomes) - started
    result["ticks"] += len(ticks)
    progress = {"ticks_done": result["ticks"], "total": req["ticks"]}
    progress.update(started=result["started_count"], skipped=result["skipped_count"])
    state = {"result": result, "progress": progress}
    if len(ticks) < BACKFILL_PAGE or ticks[-1] >= req["hi"]:
        return replace(job, status="completed", cursor=None, state=state)
    return replace(job, cursor=str(ticks[-1]), state=state)
