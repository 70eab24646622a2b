"""What the API does, independent of HTTP: validate, write, then dispatch."""

from __future__ import annotations

import builtins
import logging
import re
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..clock import Clock
from ..dispatch import Dispatcher
from ..errors import BadInputError
from ..model import (
    DEFAULT_TASK_QUEUE,
    MAX_INPUT_BYTES,
    MAX_SIGNAL_PAYLOAD_BYTES,
    MAX_TAGS,
    TAG_KEY_RE,
    TAG_VALUE_RE,
    WORKFLOW_ID_RE,
    Run,
    Signal,
    Status,
    StepRecord,
)
from ..payloads import SyncValues
from ..resources import undeclared_queue_fix
from ..settings import Settings
from ..store import Store
from ..store.codec import encode_json
from ..store.pages import Position, Read
from ..store.registry import LIVE_WINDOW_MS, WorkerInfo, list_workers
from ..store.sync import Page
from .models import Fleet, served_key

log = logging.getLogger(__name__)

TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")

MAX_EXECUTION_TIMEOUT_S = 366 * 24 * 3600


@dataclass
class Service:
    store: Store
    dispatcher: Dispatcher
    clock: Clock
    settings: Settings
    # Reads offloaded values (orchestrator/payloads.py) for the GET views; None:
    # they show as links without a URL.
    values: SyncValues | None = None

    def start(
        self,
        name: str,
        input: Any,
        workflow_id: str | None = None,
        *,
        execution_timeout_s: float | None = None,
        traceparent: str | None = None,
        tags: dict[str, str] | None = None,
        task_queue: str | None = None,
    ) -> tuple[Run, bool]:
        """Create a run and dispatch it. Returns (run, created)."""
        run = self.new_run(
            name,
            input,
            workflow_id,
            execution_timeout_s=execution_timeout_s,
            traceparent=traceparent,
            tags=tags,
            task_queue=task_queue,
        )
        stored, created = self.store.create(run)
        if stored.status == Status.PENDING:
            # A repeated start of a pending run sends again: harmless (the claim
            # decides) and it repairs a start whose first send was lost.
            self._send(stored.id, "start", stored.task_queue, name=stored.name)
        return stored, created

    def new_run(
        self,
        name: str,
        input: Any,
        workflow_id: str | None = None,
        *,
        execution_timeout_s: float | None = None,
        traceparent: str | None = None,
        tags: dict[str, str] | None = None,
        task_queue: str | None = None,
    ) -> Run:
        """The pending run a start creates, validated (shared by schedules' ticks)."""
        text = encode_json(input, what="input", limit=MAX_INPUT_BYTES)
        tags = dict(tags or {})
        _check_tags(tags)
        self.check_task_queue(task_queue)
        if (
            execution_timeout_s is not None
            and not 0 < execution_timeout_s <= MAX_EXECUTION_TIMEOUT_S
        ):
            raise BadInputError(
                f"execution_timeout_seconds must be above 0 and at most {MAX_EXECUTION_TIMEOUT_S}"
            )
        now = self.clock.now_ms()
        return Run(
            id=workflow_id or str(uuid.uuid4()),
            name=name,
            status=Status.PENDING,
            input=text,
            created_at=now,
            updated_at=now,
            deadline_at=None
            if execution_timeout_s is None
            else now + int(execution_timeout_s * 1000),
            # Kept only if well formed: it parents the worker's spans (tracing is optional).
            traceparent=traceparent
            if traceparent and TRACEPARENT_RE.fullmatch(traceparent)
            else None,
            tags=tags,
            task_queue=None if task_queue in (None, DEFAULT_TASK_QUEUE) else task_queue,
        )

    def check_task_queue(self, task_queue: str | None) -> None:
        """A task queue the deployment does not have is bad input (400), not a run
        that would wait forever."""
        if task_queue is not None and task_queue not in self.settings.task_queues:
            raise BadInputError(
                f"task queue {task_queue!r} is not one of this deployment's: "
                + ", ".join(self.settings.task_queues)
                + f"; {undeclared_queue_fix(task_queue)}"
            )

    @cached_property
    def schedules(self) -> Any:
        """The recurring schedules' service (`api/schedules.py`), sharing this one."""
        from ..store.schedules import ScheduleStore
        from .schedules import ScheduleService

        return ScheduleService(
            runs=self,
            store=ScheduleStore(self.store.ddb, self.settings.table),
            scheduler=self.dispatcher.scheduler,
        )

    @cached_property
    def jobs(self) -> Any:
        """Bulk operations and backfills in bounded pages (`api/jobs.py`)."""
        from ..store.jobs import JobStore
        from . import bulk
        from .jobs import JobService
        from .schedules import backfill_page

        return JobService(
            self,
            JobStore(self.store.ddb, self.settings.table),
            {"bulk": bulk.page, "backfill": backfill_page},
        )

    def dispatch(self, workflow_id: str, reason: str, task_queue: str | None = None) -> None:
        """Send a run just created (or found pending); a lost send is the sweeper's."""
        self._send(workflow_id, reason, task_queue)

    def _send(
        self,
        workflow_id: str,
        reason: str,
        task_queue: str | None = None,
        *,
        delay_s: int = 0,
        name: str | None = None,
    ) -> None:
        try:
            self.dispatcher.send(workflow_id, reason, delay_s, task_queue=task_queue, name=name)
        except Exception:
            # The write is durable: the sweeper's walk of `by_created` finds the
            # run still pending after the grace period and sends it. The caller's
            # request succeeded.
            log.exception("send failed for %s; the sweeper will dispatch it", workflow_id)

    def workers(self, include_stopped: bool = False) -> list[tuple[WorkerInfo, bool]]:
        """Registered workers with their liveness, most recently seen first."""
        now = self.clock.now_ms()
        found = list_workers(self.store.ddb, self.settings.table)
        found.sort(key=lambda w: w.last_seen, reverse=True)
        return [(w, w.live(now)) for w in found if include_stopped or w.live(now)]

    def fleet(self) -> Fleet:
        """The registry's view for run views (one Query of the registry): what live
        workers serve, and when each build last had a live worker."""
        now = self.clock.now_ms()
        served: set[str] = set()
        build_live_at: dict[str, int] = {}
        for w, live in self.workers(include_stopped=True):
            if live:
                served.update(
                    w.served or (served_key(n, q) for q in w.task_queues for n in w.names)
                )
            if w.build_id is not None:
                # Live now; else live until its last beat (stopped) or until it missed
                # two beats (gone without a word).
                at = now if live else w.last_seen + (0 if w.stopped else LIVE_WINDOW_MS)
                build_live_at[w.build_id] = max(at, build_live_at.get(w.build_id, 0))
        return Fleet(served, build_live_at, now, self.settings.stranded_after_s * 1000)

    def get(self, workflow_id: str) -> Run:
        _check_id(workflow_id)
        return self.store.get(workflow_id)

    def steps(self, workflow_id: str, generation: int | None = None) -> list[StepRecord]:
        """The current generation's records (continue-as-new), or `generation`'s."""
        _check_id(workflow_id)
        return self.store.steps(workflow_id, generation)

    def list(
        self,
        *,
        status: str | None,
        name: str | None,
        limit: int,
        cursor: str | None,
        tag: str | None = None,
        build_id: str | None = None,
    ) -> Page:
        if tag is not None:
            key, sep, value = tag.partition("=")
            if not sep or status or name or build_id:
                raise BadInputError(
                    "tag is key=value, and lists by tag alone (no status or name filter)"
                )
            _check_tags({key: value})
            return self.store.list_by_tag(key, value, limit=limit, cursor=cursor)
        st = None
        if status:
            try:
                st = Status(status)
            except ValueError:
                allowed = ", ".join(s.value for s in Status)
                raise BadInputError(f"unknown status {status!r}; one of: {allowed}") from None
        return self.store.list_runs(
            status=st, name=name, limit=limit, cursor=cursor, build_id=build_id
        )

    def cancel(self, workflow_id: str, reason: str | None = None) -> tuple[Run, str]:
        _check_id(workflow_id)
        before, after, outcome = self.store.cancel(workflow_id, reason or "cancelled by request")
        if outcome == "cancelled" and before.timer:
            try:
                self.dispatcher.delete_schedule(before.timer)
            except Exception:
                # A leftover schedule only sends a message for a cancelled run,
                # which a worker drops; the schedule deletes itself after firing.
                log.exception("could not delete schedule %s", before.timer)
        if outcome == "cancelled":
            self._after_end(after, reason or "cancelled by request")
        return after, outcome

    def _after_end(self, run: Run, reason: str) -> None:
        """Effects of a run ended here (not by its worker): a child tells its
        parent; a parent cancels its children that are still going. Each is
        retried by the sweeper (a child stays due until its parent is told) or is
        harmless to repeat."""
        if run.parent_id is not None and not run.parent_polls:
            try:
                woke, timer = self.store.notify_parent(run, grace_ms=self.settings.sweep_grace_ms)
                if woke:
                    self._send(run.parent_id, "child")
                if timer:
                    self.dispatcher.delete_schedule(timer)
            except Exception:
                log.exception("could not tell the parent of %s; the sweeper will", run.id)
        for child_id in self.store.open_children(run.id):
            try:
                self.cancel(child_id, f"parent {run.id} ended: {reason}"[:500])
            except Exception:
                log.exception("could not cancel child %s of %s", child_id, run.id)

    def children_page(
        self, workflow_id: str, *, offset: int, limit: int
    ) -> tuple[builtins.list[tuple[str, Run | None]], bool]:
        """A page of the runs `ctx.invoke` and distributed maps started from this
        run, in the order it started them (`Store.children_page`)."""
        _check_id(workflow_id)
        self.store.get(workflow_id)  # 404 for an unknown run
        return self.store.children_page(workflow_id, offset=offset, limit=limit)

    def children(self, workflow_id: str) -> builtins.list[Run]:
        """The runs `ctx.invoke` started from this run, in the order it started them."""
        _check_id(workflow_id)
        self.store.get(workflow_id)  # 404 for an unknown run
        return self.store.children(workflow_id)

    def terminate(self, workflow_id: str, reason: str | None = None) -> tuple[Run, str]:
        """End the run now, with no cleanup (unlike cancel, which lets a running
        run clean up at its next durable call)."""
        _check_id(workflow_id)
        before, after, outcome = self.store.terminate(
            workflow_id, reason or "terminated by request"
        )
        if outcome == "terminated" and before.timer:
            try:
                self.dispatcher.delete_schedule(before.timer)
            except Exception:
                log.exception("could not delete schedule %s", before.timer)
        return after, outcome

    # --- a run's collections, a page at a time (api/collections.py) -------------------
    def read_steps(
        self, workflow_id: str, generation: int | None, start: Position, *, batch: int
    ) -> tuple[Run, Read[StepRecord]]:
        _check_id(workflow_id)
        return self.store.read_steps(workflow_id, generation, start, batch=batch)

    def read_inbox(
        self, workflow_id: str, start: Position, *, batch: int
    ) -> tuple[Run, Read[Signal]]:
        _check_id(workflow_id)
        return self.store.read_inbox(workflow_id, start, batch=batch)

    def read_history(
        self, workflow_id: str, start: Position, *, batch: int
    ) -> tuple[Run, Read[StepRecord | Signal]]:
        _check_id(workflow_id)
        return self.store.read_history(workflow_id, start, batch=batch)

    def signal(self, workflow_id: str, name: str, payload: Any) -> tuple[Signal, bool]:
        sig, woke, _ = self.signal_read(workflow_id, name, payload)
        return sig, woke

    def signal_read(self, workflow_id: str, name: str, payload: Any) -> tuple[Signal, bool, Run]:
        """Store a signal: (the signal, whether it woke the run, the run as the
        signal's write read it, for `signal_warning`)."""
        _check_id(workflow_id)
        text = encode_json(payload, what="signal payload", limit=MAX_SIGNAL_PAYLOAD_BYTES)
        sig, woke, timer, run = self.store.send_signal_read(
            workflow_id, name, text, grace_ms=self.settings.sweep_grace_ms
        )
        if woke:
            self._send(workflow_id, "signal", run.route)  # its task queue, or its pinned build's
        if timer:
            # The wait's timeout schedule is moot now. Left alone it would fire
            # once later (one Scheduler invocation and a message a worker drops).
            try:
                self.dispatcher.delete_schedule(timer)
            except Exception:
                log.exception("could not delete schedule %s", timer)
        return sig, woke, run


def signal_warning(run: Run, name: str) -> str | None:
    """Why a signal that woke nothing may be a mistake: the run (as the signal's
    write read it) waits for another name. (A signal sent before any wait is
    normal: buffered.)"""
    if run.status.value == "waiting" and run.wait_signals and name not in run.wait_signals:
        return (
            f"the run is waiting for signal {run.wait_signal!r}, not {name!r}: "
            f"this one stays in its inbox until the run waits for {name!r}"
        )
    return None


def _check_tags(tags: dict[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise BadInputError(f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY_RE.fullmatch(key):
            raise BadInputError(f"tag key {key!r}: a letter, then up to 63 of [A-Za-z0-9_.-]")
        if not isinstance(value, str) or not TAG_VALUE_RE.fullmatch(value):
            raise BadInputError(f"tag value {value!r}: 1 to 128 of [A-Za-z0-9_.:@-]")


def _check_id(workflow_id: str) -> None:
    if not WORKFLOW_ID_RE.fullmatch(workflow_id):
        raise BadInputError(f"{workflow_id!r} is not a valid workflow id")
