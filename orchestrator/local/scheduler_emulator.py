"""Fires EventBridge Scheduler one-time schedules, which moto stores but never
fires. It reads schedules back through the Scheduler API (so the workers' real
create/delete calls are exercised), sends each due schedule's target input to
its SQS queue, and deletes the schedule when its ActionAfterCompletion says
DELETE. Due means: the schedule's at() time has passed on the stack's Clock,
so a skipping clock makes a one-day timer fire at once."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..clock import Clock

log = logging.getLogger(__name__)
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)\Z")


def at_ms(expression: str) -> int | None:
    m = _AT.match(expression)
    if not m:
        return None
    return int(
        datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000
    )


class SchedulerEmulator:
    def __init__(self, scheduler: Any, sqs: Any, clock: Clock, group: str) -> None:
        self._scheduler = scheduler
        self._sqs = sqs
        self._clock = clock
        self._group = group
        self._queue_urls: dict[str, str] = {}
        self.fired = 0

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            self._queue_urls[arn] = self._sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])[
                "QueueUrl"
            ]
        return self._queue_urls[arn]

    def fire_due(self) -> int:
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
