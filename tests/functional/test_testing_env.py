"""The time-skipping test environment offered to users."""

from __future__ import annotations

from datetime import timedelta

from examples.reminder import reminder
from orchestrator.testing import WorkflowTestEnvironment


def test_a_one_day_reminder_completes_in_wall_seconds() -> None:
    # "Wall seconds": the run sleeps a day and the waits below give up within a
    # minute (no duration is measured, so a loaded machine cannot fail it).
    with WorkflowTestEnvironment(workflows=[reminder]) as env:
        run = env.client.start("reminder", {"email": "a@example.com"})
        parked = env.wait_for_status(run["id"], "sleeping")
        assert env.stack is not None
        env.stack.tick()  # the schedule emulator and the sweeper: nothing is due yet
        assert env.client.get(run["id"])["status"] == "sleeping"  # a day has not passed
        env.skip(timedelta(days=1))
        done = env.client.wait(run["id"], timeout=60)
    assert done["status"] == "completed"
    assert done["output"]["text"] == "How's it going?"
    assert parked["wake_at"] is not None
