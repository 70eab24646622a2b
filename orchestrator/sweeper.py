"""The sweeper: the backstop that gives every non-terminal run a way forward.

It reads only the sparse `by_due` index (never a table scan) for runs whose
due time has passed: pending runs whose start message was lost or that no
worker has taken, running runs whose owner died and whose message is gone,
sleepers and timed waits whose timer never fired, and runs a signal woke
whose dispatch was lost. For each it moves `due_at` forward (a conditional
write on what it read) and then sends the run to the queue.

It never changes a run's status through this path: recovery goes through the
normal claim, which decides. A duplicate message is harmless, so two sweepers
running at once are safe; the conditional re-arm makes the second one skip
most runs.

It also drains the dead-letter queue (`drain_dead_letters`): a message lands
there after `MAX_RECEIVE_COUNT` deliveries that never finished, which for a
run no worker holds means its workflow keeps crashing the worker process (a
poison message). Such a run is failed with PoisonMessageError, in one
conditional write, instead of cycling forever. See docs/reliability.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from . import resources as r
from .clock import Clock
from .dispatch import Dispatcher, parse_body
from .errors import NotFoundError
from .model import Run, Status
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)

MAX_BACKOFF_MS = 15 * 60 * 1000
RUNNING_RECHECK_MS = 5 * 60 * 1000


DLQ_BATCHES = 5  # at most this many receives of 10 from the dead-letter queue per sweep
DLQ_VISIBILITY_SECONDS = 30  # a dead letter not settled this round comes back after this


@dataclass
class SweepReport:
    examined: int = 0
    sent: list[str] = field(default_factory=list)
    rearmed: int = 0
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
    # worker serves yet is offered again and again but ever more rarely.
    backoff = min(grace * (2 ** min(run.dispatches, 16)), MAX_BACKOFF_MS)
    return now + backoff, True


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
        for shard in range(r.DUE_SHARDS):
            for workflow_id in self._store.due(shard, now=now):
                report.examined += 1
                try:
                    self._sweep_run(workflow_id, now, report)
                except Exception:
                    # One run's failed request must not stop the sweep of the others.
                    log.exception("sweeping %s failed; the next sweep retries", workflow_id)
        if report.sent:
            log.info("sweeper re-dispatched %d run(s)", len(report.sent))
        try:
            self.drain_dead_letters(report)
        except Exception:
            log.exception("draining the dead-letter queue failed; the next sweep retries")
        return report

    def _sweep_run(self, workflow_id: str, now: int, report: SweepReport) -> None:
        try:
            run = self._store.get(workflow_id)
        except NotFoundError:
            return
        if run.status.terminal or run.due_at is None or run.due_at > now:
            return  # moved since the index was read
        due_at, send = next_due(run, now, self._settings)
        if not self._store.rearm(run, due_at=due_at):
            return  # it moved: whoever moved it owns the way forward
        report.rearmed += 1
        if send:
            try:
                self._dispatcher.send(workflow_id, "sweep")
                report.sent.append(workflow_id)
            except Exception:
                log.exception("sweeper send failed for %s; next sweep retries", workflow_id)

    # --- the dead-letter queue ------------------------------------------------------------
    def drain_dead_letters(self, report: SweepReport | None = None) -> SweepReport:
        """Settle the messages in the dead-letter queue.

        For each: the run it names is read. Running with an expired lease (no
        worker holds it; its message failed MAX_RECEIVE_COUNT deliveries): fail it
        with PoisonMessageError in one conditional write (`requests.fail_poisoned`),
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
        url = self._settings.dlq_url
        if not url or self._sqs is None:
            return report
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
                    log.exception("settling dead letter %s failed", m.get("MessageId"))
                    continue
                if settled:
                    self._sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                    report.dead_letters += 1
            if len(messages) < 10:
                break
        if report.poisoned:
            log.warning("failed %d run(s) as poison messages", len(report.poisoned))
        return report

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
        Dispatcher(client("sqs", settings), settings),
        SYSTEM_CLOCK,
        settings,
    )
    report = sweeper.sweep_once()
    result = {"examined": report.examined, "sent": len(report.sent), "rearmed": report.rearmed}
    result.update(dead_letters=report.dead_letters, poisoned=len(report.poisoned))
    Logger(service="orchestrator-sweeper").info(
        "sweep", extra={**result, "workflow_ids": report.sent[:50]}
    )
    metrics = Metrics(namespace="Orchestrator", service="orchestrator-sweeper")
    metrics.add_metric(name="RunsExamined", unit=MetricUnit.Count, value=report.examined)
    metrics.add_metric(name="RunsRedispatched", unit=MetricUnit.Count, value=len(report.sent))
    metrics.flush_metrics()
    return result
