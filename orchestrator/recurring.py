"""The EventBridge Scheduler side of recurring schedules: the request that
creates (or replaces) a schedule, and the event its target receives.

A recurring schedule invokes the API Lambda directly with

    {"orchestrator_schedule": "<name>", "tick": "<aws.scheduler.scheduled-time>"}

(the service substitutes the tick's scheduled time, not the delivery time, so a
retried or late delivery names the same tick and so the same run id). The
Lambda hands it to the same service that serves `POST /workflows`. Why the API
Lambda and not a message for the workers: a start needs no worker (a schedule
of a workflow no worker serves yet still records its runs, pending, as a start
does), validation and the overlap decision live in one place, and Scheduler's
own retry policy and dead-letter queue cover a failed invocation.

Pure: builds plain request dicts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .model import Schedule
from .schedule_expr import parse, parse_iso
from .settings import Settings

EVENT_KEY = "orchestrator_schedule"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
MAX_EVENT_AGE_S = 86_400  # Scheduler's retry limits: at most a day, at least a minute
MIN_EVENT_AGE_S = 60


def target_input(name: str) -> str:
    return json.dumps({EVENT_KEY: name, "tick": SCHEDULED_TIME}, separators=(",", ":"))


def schedule_request(settings: Settings, s: Schedule, now_ms: int) -> dict[str, Any]:
    """CreateSchedule / UpdateSchedule arguments for `s`, the flexible time window
    off. A rate schedule's StartDate is its next tick counted from the anchor, so
    that every update keeps its phase (and Scheduler refuses a StartDate in the
    past)."""
    req: dict[str, Any] = {
        "Name": s.name,
        "GroupName": settings.recurring_group,
        "ScheduleExpression": s.expression,
        "ScheduleExpressionTimezone": s.timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "DISABLED" if s.paused else "ENABLED",
        "Description": f"starts {s.workflow} runs (orchestrator schedule {s.name})",
        "Target": {
            "Arn": settings.recurring_target_arn,
            "RoleArn": settings.recurring_role_arn,
            "Input": target_input(s.name),
            # A delivery later than the catch-up window would be refused as missed:
            # Scheduler stops retrying at the same age.
            "RetryPolicy": {
                "MaximumEventAgeInSeconds": max(
                    MIN_EVENT_AGE_S, min(MAX_EVENT_AGE_S, s.catchup_window_s)
                ),
                "MaximumRetryAttempts": 185,
            },
        },
    }
    if s.expression.startswith("rate("):
        first = parse(s.expression, s.timezone).next_tick(now_ms, s.anchor_at)
        assert first is not None
        req["StartDate"] = datetime.fromtimestamp(first / 1000, tz=UTC)
    return req


def parse_event(event: Any) -> tuple[str, int] | None:
    """(schedule name, tick ms) if `event` is a recurring schedule's invocation."""
    if not isinstance(event, dict) or EVENT_KEY not in event:
        return None
    name, tick = event.get(EVENT_KEY), event.get("tick")
    if not isinstance(name, str) or not isinstance(tick, str):
        raise ValueError("a schedule event needs a schedule name and a tick time")
    return name, parse_iso(tick)
