"""Fires EventBridge Scheduler schedules, which moto stores but never fires.

One-time schedules (the timer group): it reads them back through the Scheduler
API (so the workers' real create/delete calls are exercised), sends each due
schedule's target input to its SQS queue, and deletes the schedule when its
ActionAfterCompletion says DELETE. Due means: the schedule's at() time has
passed on the stack's Clock, so a skipping clock makes a one-day timer fire at
once.

Recurring schedules (the recurring group): cron and rate expressions in their
time zone, evaluated by `orchestrator.schedule_expr` (as the service does,
daylight saving time included). Each tick after the emulator first saw the
schedule is delivered once, in order, with the target input's
`<aws.scheduler.scheduled-time>` replaced by the tick, to `deliver` (the local
stack hands it to the API's schedule handler, as the Lambda target would be).
A disabled schedule's ticks pass without delivery, as on the service."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..clock import Clock
from ..recurring import SCHEDULED_TIME
from ..schedule_expr import Expression, ExpressionError, parse, tick_iso

log = logging.getLogger(__name__)
_AT = re.compile(r"at\(([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\)")


def at_ms(expression: str) -> int | None:
    m = _AT.fullmatch(expression)
    if not m:
        return None
    return int(
        datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000
    )


class SchedulerEmulator:
    def __init__(
        self,
        scheduler: Any,
        sqs: Any,
        clock: Clock,
        group: str,
        *,
        recurring_group: str | None = None,
        deliver: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._sqs = sqs
        self._clock = clock
        self._group = group
        self._recurring_group = recurring_group
        self._deliver = deliver
        self._queue_urls: dict[str, str] = {}
        # recurring schedule name -> (expression, anchor ms, last tick handled, target input)
        self._cursors: dict[str, tuple[Expression, int, int, str]] = {}
        self._lock = threading.Lock()
        self.fired = 0
        self.deliveries: list[tuple[str, int, Any]] = []  # (schedule, tick, what deliver returned)
        self.delivered_total = 0  # deliveries ever (the list keeps the last 1000)

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            self._queue_urls[arn] = self._sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])[
                "QueueUrl"
            ]
        return self._queue_urls[arn]

    def fire_due(self) -> int:
        with self._lock:
            return self._fire_timers() + self._fire_recurring()

    def _fire_timers(self) -> int:
        fired = 0
        now = self._clock.now_ms()
        pages = self._scheduler.get_paginator("list_schedules").paginate(GroupName=self._group)
        for page in pages:
            for summary in page.get("Schedules", []):
                try:
                    sched = self._scheduler.get_schedule(
                        Name=summary["Name"], GroupName=self._group
                    )
                except ClientError:
                    continue  # deleted meanwhile
                when = at_ms(sched.get("ScheduleExpression", ""))
                if when is None or when > now or sched.get("State") == "DISABLED":
                    continue
                target = sched["Target"]
                self._sqs.send_message(
                    QueueUrl=self._queue_url(target["Arn"]), MessageBody=target.get("Input", "")
                )
                fired += 1
                if sched.get("ActionAfterCompletion") == "DELETE":
                    with contextlib.suppress(ClientError):
                        self._scheduler.delete_schedule(Name=summary["Name"], GroupName=self._group)
        self.fired += fired
        return fired

    # --- recurring schedules ------------------------------------------------------------
    def _refresh(self, now: int) -> None:
        """Read the recurring group: new schedules get a cursor at `now` (a rate
        schedule at its StartDate when that is earlier); deleted ones are dropped."""
        if self._recurring_group is None:
            return
        seen: set[str] = set()
        kwargs: dict[str, Any] = {"GroupName": self._recurring_group}
        while True:
            try:
                page = self._scheduler.list_schedules(**kwargs)
            except ClientError:
                return  # no group (yet)
            for summary in page.get("Schedules", []):
                name = summary["Name"]
                try:
                    sched = self._scheduler.get_schedule(Name=name, GroupName=self._recurring_group)
                except ClientError:
                    continue
                seen.add(name)
                try:
                    expr = parse(
                        sched.get("ScheduleExpression", ""),
                        sched.get("ScheduleExpressionTimezone") or "UTC",
                    )
                except ExpressionError:
                    continue
                start = sched.get("StartDate")
                start_ms = int(start.timestamp() * 1000) if isinstance(start, datetime) else None
                anchor = start_ms - (expr.rate_ms or 0) if start_ms is not None else 0
                old = self._cursors.get(name)
                cursor = old[2] if old else min(now, start_ms - 1 if start_ms else now)
                if sched.get("State") == "DISABLED":
                    cursor = max(cursor, now)  # ticks while disabled never fire
                target = sched.get("Target", {}).get("Input", "")
                self._cursors[name] = (expr, anchor, cursor, target)
            token = page.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        for gone in set(self._cursors) - seen:
            del self._cursors[gone]

    def adopt_recurring(self) -> None:
        """Treat every recurring schedule as first seen now: ticks from now on are
        delivered, earlier ones are not (restored schedules: their StartDate is
        long past, and a tick missed while the stack was stopped is the
        sweeper's catch-up's, not a flood of deliveries)."""
        with self._lock:
            now = self._clock.now_ms()
            self._refresh(now)
            for name, (expr, anchor, cursor, target) in self._cursors.items():
                self._cursors[name] = (expr, anchor, max(cursor, now), target)

    def _fire_recurring(self) -> int:
        if self._recurring_group is None or self._deliver is None:
            return 0
        now = self._clock.now_ms()
        self._refresh(now)
        fired = 0
        for name, (expr, anchor, cursor, target) in list(self._cursors.items()):
            tick = expr.next_tick(cursor, anchor)
            while tick is not None and tick <= now:
                payload = json.loads(target.replace(SCHEDULED_TIME, tick_iso(tick)))
                try:
                    result = self._deliver(payload)
                except Exception:
                    # The service would retry the invocation; the sweeper's catch-up
                    # covers it here. The tick counts as delivered.
                    log.exception("delivery of schedule %s tick %s failed", name, tick)
                    result = None
                self.deliveries.append((name, tick, result))
                self.delivered_total += 1
                del self.deliveries[:-1000]
                fired += 1
                cursor = tick
                self._cursors[name] = (expr, anchor, cursor, target)
                tick = expr.next_tick(cursor, anchor)
        self.fired += fired
        return fired

    def deliveries_since(self, total: int) -> list[tuple[str, int, Any]]:
        """The deliveries after the first `total` ever made (those still kept)."""
        with self._lock:
            new = self.delivered_total - total
            return self.deliveries[-new:] if new > 0 else []

    def next_recurring_tick(self) -> int | None:
        """The earliest tick not yet delivered, over every recurring schedule
        (`WorkflowTestEnvironment.skip` stops the clock at each)."""
        with self._lock:
            self._refresh(self._clock.now_ms())
            ticks = [
                t
                for expr, anchor, cursor, _ in self._cursors.values()
                if (t := expr.next_tick(cursor, anchor)) is not None
            ]
        return min(ticks, default=None)
