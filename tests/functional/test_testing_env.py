"""The time-skipping test environment offered to users."""

from __future__ import annotations

import time
from datetime import timedelta

from examples.reminder import reminder
from orchestrator.testing import WorkflowTestEnvironment


def test_a_one_day_reminder_completes_in_wall_seconds() -> None:
    t0 = time.monotonic()
    with WorkflowTestEnvironment(workflows=[reminder]) as env:
        run = env.client.start("reminder", {"email": "a@example.com"})
        parked = env.wait_for_status(run["id"], "sleeping")
        assert env.stack is not None
        env.stack.tick()  # the schedule emulator and the sweeper: nothing is due yet
        assert env.client.get(run["id"])["status"] == "sleeping"  # a day has not passed
        env.skip(timedelta(days=1))
        done = env.client.wait(run["id"], timeout=20)
    assert done["status"] == "completed"
    assert done["output"]["text"] == "How's it going?"
    assert parked["wake_at"] is not None
    assert time.monotonic() - t0 < 60
