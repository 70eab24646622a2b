"""The sweeper: the backstop that gives every non-terminal run a way forward.

It reads only the sparse `by_due` index (never a table scan) for runs whose
due time has passed: pending runs whose start message was lost or that no
worker has taken, running runs whose owner died and whose message is gone,
sleepers and timed waits whose timer never fired, and runs a signal woke
whose dispatch was lost. For each it moves `due_at` forward (a conditional
write on what it read) and then sends the run to the queue.

It never changes a run's status: recovery goes through the normal claim, which
decides. A duplicate message is harmless, so two sweepers running at once are
safe; the conditional re-arm makes the second one skip most runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from . import resources as r
from .clock import Clock
from .dispatch import Dispatcher
from .errors import NotFoundError
from .model import Run, Status
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)

MAX_BACKOFF_MS = 15 * 60 * 1000
RUNNING_RECHECK_MS = 5 * 60 * 1000


@dataclass
class SweepReport:
    examined: int = 0
    sent: list[str] = field(default_factory=list)
    rearmed: int = 0


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
        self, store: Store, dispatcher: Dispatcher, clock: Clock, settings: Settings
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._settings = settings

    def sweep_once(self) -> SweepReport:
        report = SweepReport()
        now = self._clock.now_ms()
        for shard in range(r.DUE_SHARDS):
            for workflow_id in self._store.due(shard, now=now):
                report.examined += 1
                try:
                    run = self._store.get(workflow_id)
                except NotFoundError:
                    continue
                if run.status.terminal or run.due_at is None or run.due_at > now:
                    continue  # moved since the index was read
                due_at, send = next_due(run, now, self._settings)
                if not self._store.rearm(run, due_at=due_at):
                    continue  # it moved: whoever moved it owns the way forward
                report.rearmed += 1
                if send:
                    try:
                        self._dispatcher.send(workflow_id, "sweep")
                        report.sent.append(workflow_id)
                    except Exception:
                        log.exception("sweeper send failed for %s; next sweep retries", workflow_id)
        if report.sent:
            log.info("sweeper re-dispatched %d run(s)", len(report.sent))
        return report


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
    Logger(service="orchestrator-sweeper").info(
        "sweep", extra={**result, "workflow_ids": report.sent[:50]}
    )
    metrics = Metrics(namespace="Orchestrator", service="orchestrator-sweeper")
    metrics.add_metric(name="RunsExamined", unit=MetricUnit.Count, value=report.examined)
    metrics.add_metric(name="RunsRedispatched", unit=MetricUnit.Count, value=len(report.sent))
    metrics.flush_metrics()
    return result
