"""The sweeper: the backstop that gives every non-terminal run a way forward.

It never scans the table. Two index reads find the runs that may need it:

- The walk of `by_created`: every run is looked at once, when it is older than
  the grace period (`sweep_grace_ms`), in creation order from a stored mark.
  A run still pending or running then (a lost start message, a slow or dead
  owner) is put into `by_due` (`promote`), and a pending one is sent. A run
  that finished within the grace costs one eventually consistent read here
  and no index write anywhere: that is why new runs start outside `by_due`.
- The sparse `by_due` index, for runs whose due time has passed: pending runs
  whose message was lost or that no worker has taken, running runs whose
  owner died and whose message is gone, sleepers and timed waits whose timer
  never fired, and runs a signal woke whose dispatch was lost. For each it
  moves `due_at` forward (a conditional write on what it read) and then sends
  the run to the queue.

It never changes a run's status through these paths: recovery goes through
the normal claim, which decides. The one exception is a run that no worker
holds (pending, sleeping, waiting) past its execution deadline: the due pass
fails it with ExecutionTimeoutError, in one write conditioned on what it read,
since for a name no worker serves no claim would ever come. A duplicate
message is harmless, so two sweepers running at once are safe; the
conditional re-arm makes the second one skip most runs.

It also drains the dead-letter queue (`drain_dead_letters`): a message lands
there after `MAX_RECEIVE_COUNT` deliveries that never finished, which for a
run no worker holds means its workflow keeps crashing the worker process (a
poison message). Such a run is failed with PoisonMessageError, in one
conditional write, instead of cycling forever. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from . import resources as r
from .clock import Clock
from .dispatch import Dispatcher, parse_body
from .errors import NotFoundError
from .model import TRANSITIONS, Run, Status
from .settings import Settings
from .store import Store
from .store.codec import list_sk

log = logging.getLogger(__name__)

MAX_BACKOFF_MS = 15 * 60 * 1000
RUNNING_RECHECK_MS = 5 * 60 * 1000

WALK_PAGE = 100  # runs per by_created page (one Query, one BatchGetItem)
DUE_PAGE = 100  # due runs per by_due Query
# Wall-clock budgets of one sweep (the Lambda's timeout is 55 s, its period 60 s;
# the jobs' pass after these has api/jobs.SWEEP_BUDGET_S).
# Each pass works on its shards in parallel, at least one page per shard, and
# stops taking new pages when its budget is spent; the rest waits for the next
# sweep (the walk resumes at its marks, the due pass finds what is still due).
WALK_BUDGET_S = 25.0
DUE_BUDGET_S = 15.0


DLQ_BATCHES = 5  # at most this many receives of 10 from the dead-letter queue per sweep
DLQ_VISIBILITY_SECONDS = 30  # a dead letter not settled this round comes back after this
DLQ_MAX_RECEIVES = 5  # a dead letter whose settling raised this many times is set aside


@dataclass
class SweepReport:
    examined: int = 0
    sent: list[str] = field(default_factory=list)
    rearmed: int = 0
    walked: int = 0  # runs the by_created walk looked at
    promoted: list[str] = field(default_factory=list)  # runs the walk put into by_due
    timed_out: list[str] = field(default_factory=list)  # unheld runs failed at their deadline
    parents_notified: int = 0  # ended children whose end the sweeper delivered

    def merge(self, other: SweepReport) -> None:
        self.examined += other.examined
        self.sent += other.sent
        self.rearmed += other.rearmed
        self.dead_letters += other.dead_letters
        self.poisoned += other.poisoned
        self.walked += other.walked
        self.promoted += other.promoted
        self.timed_out += other.timed_out
        self.parents_notified += other.parents_notified

    dead_letters: int = 0  # DLQ messages settled (deleted)
    poisoned: list[str] = field(default_factory=list)  # runs failed as poison messages


def next_due(run: Run, now: int, settings: Settings) -> tuple[int, bool]:
    """(new due_at, send now?) for a run the index says is due. Pure."""
    grace = settings.sweep_grace_ms
    lease_ms = settings.lease_seconds * 1000
    if run.status == Status.RUNNING:
        if run.lease_until is not None and run.lease_until > now:
            return max(run.lease_until, now + RUNNING_RECHECK_MS), False
        return now + max(2 * lease_ms, grace), True
    if run.status in (Status.SLEEPING, Status.WAITING):
        if run.wake_at is not None and run.wake_at > now:
            return run.wake_at + grace, False
        return now + max(grace, 60_000), True
    # pending: re-send with exponential backoff, so a run of a name that no
    # worker serves yet is offered again and again but ever more rarely, and
    # looked at again by its execution deadline at the latest (the sweeper then
    # fails it: `past_deadline`).
    backoff = min(grace * (2 ** min(run.dispatches, 16)), MAX_BACKOFF_MS)
    due = now + backoff
    if run.deadline_at is not None and now < run.deadline_at < due:
        due = run.deadline_at
    return due, True


def past_deadline(run: Run, now: int) -> bool:
    """A run no worker holds whose execution deadline has passed: the sweeper
    fails it (a worker would, at its next claim, but there may be none)."""
    return (
        run.status in TRANSITIONS["expire"]
        and run.deadline_at is not None
        and run.deadline_at <= now
    )


class Sweeper:
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        clock: Clock,
        settings: Settings,
        sqs: Any = None,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._settings = settings
        # The SQS client that reads the dead-letter queue: the dispatcher's by default.
        self._sqs = sqs if sqs is not None else getattr(dispatcher, "_sqs", None)

    def sweep_once(self) -> SweepReport:
        report = SweepReport()
        now = self._clock.now_ms()
        try:
            self.walk_new_runs(now, report)
        except Exception:
            log.exception("walking new runs failed; the next sweep goes on from the mark")
        deadline = time.monotonic() + DUE_BUDGET_S
        for part in _per_shard(r.DUE_SHARDS, lambda s: self._due_shard(s, now, deadline)):
            report.merge(part)
        if report.sent:
            log.info("sweeper re-dispatched %d run(s)", len(report.sent))
        try:
            self.drain_dead_letters(report)
        except Exception:
            log.exception("draining the dead-letter queue failed; the next sweep retries")
        return report

    def _due_shard(self, shard: int, now: int, deadline: float) -> SweepReport:
        """The due pass over one `by_due` shard, a page at a time. A settled run
        leaves the `due_at <= now` range (re-armed, finished or moved), so the next
        Query returns the next ones. The index is eventually consistent and a run
        that failed stays due, so a page with no run not seen yet ends the pass."""
        report = SweepReport()
        seen: set[str] = set()
        while True:
            ids = self._store.due(shard, now=now, limit=DUE_PAGE)
            new = [i for i in ids if i not in seen]
            seen.update(new)
            for workflow_id in new:
                report.examined += 1
                try:
                    self._sweep_run(workflow_id, now, report)
                except Exception:
                    # One run's failed request must not stop the sweep of the others.
                    log.exception("sweeping %s failed; the next sweep retries", workflow_id)
            if len(ids) < DUE_PAGE or not new or time.monotonic() >= deadline:
                return report

    # --- the walk of by_created ------------------------------------------------------------
    def walk_new_runs(self, now: int, report: SweepReport | None = None) -> SweepReport:
        """Settle every run created since the stored mark and before now - grace.

        Per list shard (the shards in parallel), oldest first, a page at a
        time: one Query of `by_created`, one BatchGetItem of the runs, then
        `_settle_new` for each, until the shard is done or `WALK_BUDGET_S` is
        spent. The mark moves past a run only once it is settled, so a crash
        or an error resumes at the first unsettled run. Two sweepers at once
        settle some runs twice, which is harmless: every write is conditional.
        """
        report = report if report is not None else SweepReport()
        upto = list_sk(now - self._settings.sweep_grace_ms, "~")  # "~" sorts after any id
        marks = self._store.sweep_marks()
        deadline = time.monotonic() + WALK_BUDGET_S

        def walk(shard: int) -> SweepReport:
            return self._walk_shard(shard, marks.get(shard, ""), upto, now, deadline)

        for part in _per_shard(r.LIST_SHARDS, walk):
            report.merge(part)
        return report

    def _walk_shard(
        self, shard: int, mark: str, upto: str, now: int, deadline: float
    ) -> SweepReport:
        report = SweepReport()
        while mark < upto:
            rows = self._store.created_after(shard, after=mark, upto=upto, limit=WALK_PAGE)
            if not rows:
                break
            runs = self._store.runs([wid for _, wid in rows])
            settled = mark
            for sort_key, wid in rows:
                run = runs.get(wid)  # None: deleted since (retention)
                try:
                    if run is not None:
                        self._settle_new(run, now, report)
                except Exception:
                    log.exception("settling new run %s failed; the next sweep retries", wid)
                    break
                report.walked += 1
                settled = sort_key
            if settled != mark:
                self._store.advance_sweep_mark(shard, settled)
            if settled != rows[-1][0] or len(rows) < WALK_PAGE:
                break  # an error stopped this page, or the shard is done
            if time.monotonic() >= deadline:
                log.warning(
                    "walk of shard %d stopped at its time budget; next sweep goes on", shard
                )
                break
            mark = settled
        return report

    def _expire(self, run: Run, now: int, report: SweepReport) -> bool:
        """Fail a run no worker holds past its execution deadline, as read, and
        delete its schedule. False if it moved since it was read."""
        if not self._store.fail_timed_out(run, now=now):
            return False
        report.timed_out.append(run.id)
        log.warning("run %s failed: execution timeout passed while no worker held it", run.id)
        if run.timer:
            try:
                self._dispatcher.delete_schedule(run.timer)
            except Exception:
                # It fires once later; the worker drops a finished run's message.
                log.exception("could not delete schedule %s", run.timer)
        return True

    def _settle_new(self, run: Run, now: int, report: SweepReport) -> None:
        """Put a run that is unfinished after the grace into `by_due`, and send it
        if it is pending. The read may be stale (eventually consistent): when the
        conditional write fails, decide again on a strongly consistent read."""
        for _ in range(3):
            if run.status.terminal or run.due_at is not None:
                return  # finished, or `by_due` has it already (parked, woken, released)
            if past_deadline(run, now):
                if self._expire(run, now, report):
                    return
            elif run.status == Status.WAITING and run.wake_at is None:
                return  # waits for a signal without a timeout: the signal's write moves it
            else:
                due_at, send = next_due(run, now, self._settings)
                if self._store.promote(run, due_at=due_at, dispatch=send):
                    report.promoted.append(run.id)
                    if send:
                        self._send_or_due_again(run, due_at, now, report)
                    return
            try:
                run = self._store.get(run.id)
            except NotFoundError:
                return
        raise RuntimeError(f"run {run.id} kept changing while the sweeper settled it")

    def _sweep_run(self, workflow_id: str, now: int, report: SweepReport) -> None:
        try:
            run = self._store.get(workflow_id)
        except NotFoundError:
            return
        if run.due_at is None or run.due_at > now:
            return  # moved since the index was read
        if run.status.terminal:
            if run.parent_id is not None and not run.parent_notified and not run.parent_polls:
                self._notify_parent(run, report)  # a child whose end did not reach its parent
            return
        if past_deadline(run, now):
            self._expire(run, now, report)  # if it moved, whoever moved it owns the way forward
            return
        due_at, send = next_due(run, now, self._settings)
        if not self._store.rearm(run, due_at=due_at):
            return  # it moved: whoever moved it owns the way forward
        report.rearmed += 1
        if send:
            self._send_or_due_again(run, due_at, now, report)

    def _notify_parent(self, child: Run, report: SweepReport) -> None:
        try:
            woke, timer = self._store.notify_parent(child, grace_ms=self._settings.sweep_grace_ms)
        except Exception:
            log.exception("could not tell the parent of %s that it ended", child.id)
            return
        report.parents_notified += 1
        if woke and child.parent_id is not None:
            if timer:
                try:
                    self._dispatcher.delete_schedule(timer)
                except Exception:
                    log.exception("could not delete the schedule %s", timer)
            parent_queue = None
            with contextlib.suppress(NotFoundError):
                parent_queue = self._store.get(child.parent_id).route
            self._send(child.parent_id, report, parent_queue)

    def _send(self, workflow_id: str, report: SweepReport, task_queue: str | None) -> bool:
        """Send a run; False (and a log line) if the send failed."""
        try:
            self._dispatcher.send(workflow_id, "sweep", task_queue=task_queue)
            report.sent.append(workflow_id)
            return True
        except Exception:
            log.exception("sweeper send failed for %s; the next sweep retries", workflow_id)
            return False

    def _send_or_due_again(self, run: Run, due_at: int, now: int, report: SweepReport) -> None:
        """Send a run the sweeper has just re-armed or promoted to `due_at`. If the
        send fails, nothing went out: the run is made due just after this sweep's
        `now` (so this sweep's due pass leaves it), and the next sweep sends it,
        instead of after the wait meant for a message that did (a minute for a
        parked run). One conditional write, on a failure only; if that fails too,
        the run is still due at `due_at`."""
        if self._send(run.id, report, run.route):
            return
        try:
            self._store.rearm(replace(run, due_at=due_at), due_at=now + 1, count=False)
        except Exception:
            log.exception("could not make %s due at the next sweep", run.id)

    # --- the dead-letter queue ------------------------------------------------------------
    def drain_dead_letters(self, report: SweepReport | None = None) -> SweepReport:
        """Settle the messages in the dead-letter queue.

        For each: the run it names is read. Running with an expired lease (no
        worker holds it; its message failed MAX_RECEIVE_COUNT deliveries): fail it
        with PoisonMessageError in one conditional write (`sweeps.fail_poisoned`),
        then delete the message. If that write loses (the run moved since the
        read), the message is left and decided again when it comes back.
        Everything else has its own way forward, so the message is only deleted:
        a terminal or unknown run, a body that names no run, a run a live owner
        holds (the owner keeps its own message), a parked run (its timer or
        signal wakes it), and a pending run (never claimed by these deliveries,
        so no workflow code crashed: a name no worker serves yet stays pending,
        and the sweeper keeps offering it).

        Idempotent, and safe with two sweepers at once: SQS hands a message to
        one receiver at a time, and the failing write is conditioned on the
        epoch, status and lease as read.
        """
        report = report if report is not None else SweepReport()
        for task_queue in self._settings.task_queues:
            url = self._settings.dlq_url_for(task_queue)
            if url and self._sqs is not None:
                self._drain(url, report)
        if report.poisoned:
            log.warning("failed %d run(s) as poison messages", len(report.poisoned))
        return report

    def _drain(self, url: str, report: SweepReport) -> None:
        assert self._sqs is not None
        for _ in range(DLQ_BATCHES):
            resp = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=DLQ_VISIBILITY_SECONDS,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            messages = resp.get("Messages", [])
            for m in messages:
                try:
                    settled = self._settle_dead_letter(m, report)
                except Exception:
                    # Left for a later sweep; one message must not block the others.
                    # One that keeps failing is set aside (logged, then deleted) so
                    # that no message is retried every sweep forever.
                    receives = m.get("Attributes", {}).get("ApproximateReceiveCount", "0")
                    settled = receives.isdigit() and int(receives) >= DLQ_MAX_RECEIVES
                    log.exception(
                        "settling dead letter %s failed%s",
                        m.get("MessageId"),
                        f"; set aside after {receives} tries: {m.get('Body', '')[:200]!r}"
                        if settled
                        else "",
                    )
                    if not settled:
                        continue
                if settled:
                    self._sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                    report.dead_letters += 1
            if len(messages) < 10:
                break

    def _settle_dead_letter(self, message: dict[str, Any], report: SweepReport) -> bool:
        """True when the message can be deleted."""
        workflow_id = parse_body(message.get("Body", ""))
        if workflow_id is None:
            log.warning("dead letter names no run; deleted: %r", message.get("Body", "")[:200])
            return True
        try:
            run = self._store.get(workflow_id)
        except NotFoundError:
            return True
        now = self._clock.now_ms()
        if run.status != Status.RUNNING or (run.lease_until or 0) >= now:
            return True  # terminal, parked, pending or held by a live owner
        receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        text = (
            f"the run's message reached the dead-letter queue (ApproximateReceiveCount "
            f"{receives}) and no worker holds the run: its workflow kept stopping the "
            "worker that ran it (a crash or a kill) before the run could park or finish"
        )
        if not self._store.fail_poisoned(run, now=now, message=text):
            return False  # it moved since the read: decide again when the message returns
        report.poisoned.append(workflow_id)
        log.warning("run %s failed as a poison message (%s receives)", workflow_id, receives)
        return True


def _per_shard(shards: int, work: Callable[[int], SweepReport]) -> list[SweepReport]:
    """Run `work` for every shard at once (the requests are I/O bound; boto3
    clients are thread-safe). A shard whose work raised contributes nothing:
    the others' results stand, and the next sweep tries it again."""

    def guarded(shard: int) -> SweepReport:
        try:
            return work(shard)
        except Exception:
            log.exception("sweeping shard %d failed; the next sweep retries", shard)
            return SweepReport()

    # Each thread runs in a copy of the caller's context (log and trace context).
    contexts = [contextvars.copy_context() for _ in range(shards)]
    with ThreadPoolExecutor(max_workers=shards, thread_name_prefix="sweep") as pool:
        return list(pool.map(lambda i: contexts[i].run(guarded, i), range(shards)))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The scheduled Lambda's entry point: one sweep, a structured log line with
    its figures, and EMF metrics RunsExamined / RunsRedispatched."""
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    from .aws import client
    from .clock import SYSTEM_CLOCK

    settings = Settings.from_env()
    sweeper = Sweeper(
        Store(client("dynamodb", settings), settings.table, SYSTEM_CLOCK),
        Dispatcher(client("sqs", settings), settings, client("scheduler", settings)),
        SYSTEM_CLOCK,
        settings,
    )
    report = sweeper.sweep_once()
    ticks = _catch_up_schedules(settings, sweeper)
    jobs = _advance_jobs(settings, sweeper)
    result = {"examined": report.examined, "sent": len(report.sent), "rearmed": report.rearmed}
    result.update(schedule_ticks=ticks, jobs_advanced=jobs)
    result.update(
        walked=report.walked, promoted=len(report.promoted), timed_out=len(report.timed_out)
    )
    result.update(dead_letters=report.dead_letters, poisoned=len(report.poisoned))
    Logger(service="orchestrator-sweeper").info(
        "sweep", extra={**result, "workflow_ids": report.sent[:50]}
    )
    metrics = Metrics(namespace="Orchestrator", service="orchestrator-sweeper")
    metrics.add_metric(name="RunsExamined", unit=MetricUnit.Count, value=report.examined)
    metrics.add_metric(name="RunsRedispatched", unit=MetricUnit.Count, value=len(report.sent))
    metrics.add_metric(name="RunsWalked", unit=MetricUnit.Count, value=report.walked)
    metrics.add_metric(name="RunsPromoted", unit=MetricUnit.Count, value=len(report.promoted))
    metrics.add_metric(name="RunsTimedOut", unit=MetricUnit.Count, value=len(report.timed_out))
    metrics.flush_metrics()
    return result


def _catch_up_schedules(settings: Settings, sweeper: Sweeper) -> int:
    """The schedules' pass (`ScheduleService.catch_up`): buffered ticks whose
    previous run ended, and ticks that EventBridge Scheduler did not deliver."""
    from .api.service import Service

    try:
        service = Service(sweeper._store, sweeper._dispatcher, sweeper._clock, settings)
        return len(service.schedules.catch_up(grace_ms=settings.sweep_grace_ms))
    except Exception:
        log.exception("the schedules' catch-up failed; the next sweep retries")
        return 0


def _advance_jobs(settings: Settings, sweeper: Sweeper) -> int:
    """The jobs' pass (`api/jobs.py`): pages of every running job nobody holds."""
    from .api.service import Service

    try:
        service = Service(sweeper._store, sweeper._dispatcher, sweeper._clock, settings)
        return len(service.jobs.advance_due())
    except Exception:
        log.exception("the jobs' pass failed; the next sweep retries")
        return 0
