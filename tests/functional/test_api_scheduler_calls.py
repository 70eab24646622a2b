"""The API's EventBridge Scheduler calls are exactly what its role is granted
(`infra/permissions.py`; `tests/infra/test_iam.py` ties those grants to the
template). moto enforces no IAM, so a call the role lacks would pass every
local test and fail on AWS; and a granted action no code path calls is one to
drop. The code paths: cancel (a pending wake-up), and recurring schedules'
create, create again, pause, resume and delete."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from infra.permissions import API_RECURRING_ACTIONS, API_SCHEDULE_ACTIONS
from orchestrator.api.schedules import ScheduleRequest
from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_status
from worker import workflow

NEVER = "cron(0 0 1 1 ? 2199)"


@workflow("long-nap")
async def long_nap(ctx: Any) -> str:
    await ctx.sleep("nap", timedelta(hours=30))  # long enough for a Scheduler timer
    return "done"


def test_the_api_calls_exactly_the_scheduler_actions_its_role_has(stack: Any) -> None:
    calls: dict[str, set[str]] = {}
    here = threading.get_ident()  # the API's calls, not the scheduler emulator's

    def record(event_name: str, params: dict[str, Any], **_: Any) -> None:
        if threading.get_ident() == here:
            action = "scheduler:" + event_name.rsplit(".", 1)[1]
            calls.setdefault(params["GroupName"], set()).add(action)

    stack.scheduler.meta.events.register("provide-client-params.scheduler", record)
    with BackgroundWorker([long_nap], stack.settings, clock=stack.clock):
        stack.service.start("long-nap", None, "nap")
        assert wait_status(stack, "nap", "sleeping").timer
        stack.service.cancel("nap")
    schedules = stack.service.schedules
    req = ScheduleRequest(name="nightly", workflow="long-nap", expression=NEVER)
    schedules.create(req)
    schedules.create(req)  # the same definition again puts the schedule again
    schedules.pause("nightly", None)
    schedules.resume("nightly", None)
    schedules.delete("nightly")
    assert calls == {
        stack.settings.schedule_group: set(API_SCHEDULE_ACTIONS),
        stack.settings.recurring_group: set(API_RECURRING_ACTIONS),
    }
