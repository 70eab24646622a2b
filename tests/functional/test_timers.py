"""Durable sleeps: SQS delay for short ones, EventBridge Scheduler for long ones,
the skipping clock, the sweeper as backstop, and duplicate wake-ups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.dispatch import schedule_name
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from tests.conftest import TEST_SETTINGS, executions, worker_env
from tests.helpers import WorkerProcess, queued, wait_for, wait_status
from tests.workflows import ALL


def _schedules(stack) -> list[str]:
    return [
        s["Name"]
        for s in stack.scheduler.list_schedules(GroupName=stack.settings.schedule_group)[
            "Schedules"
        ]
    ]


def test_a_one_day_sleep_completes_with_the_skipping_clock_through_a_schedule(
    stack, exec_log: Path
) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("sleeper", {"seconds": 86_400})
        parked = wait_status(stack, run.id, "sleeping")
        # Over 15 minutes: a one-time schedule in the group, named from run and position.
        assert wait_for(lambda: _schedules(stack), timeout=5) == [schedule_name(run.id, 1)]
        sched = stack.scheduler.get_schedule(
            Name=schedule_name(run.id, 1), GroupName=stack.settings.schedule_group
        )
        assert (
            sched["ScheduleExpression"].startswith("at(")
            and sched["ActionAfterCompletion"] == "DELETE"
        )
        assert sched["Target"]["Arn"] == stack.settings.queue_arn
        stack.tick()  # what would fire it early: the emulator and the sweeper, now
        wait_for(lambda: queued(stack) == 0)  # the start message, deleted at the park
        assert stack.store.get(run.id).status == Status.SLEEPING  # nothing fires early
        stack.clock.advance(86_400)
        done = wait_status(stack, run.id, "completed", timeout=15)
    assert _schedules(stack) == []  # fired and deleted
    assert parked.wake_at is not None
    steps = stack.store.steps(run.id)
    assert steps[1].wake_at == parked.wake_at  # the wake time never moved
    assert sorted(executions(exec_log)) == [f"{run.id}:after", f"{run.id}:before"]
    assert json.loads(done.output) == "awake"


def test_a_two_second_sleep_wakes_through_sqs_delay_on_the_real_clock(
    make_stack, exec_log: Path
) -> None:
    from orchestrator.clock import SystemClock

    # A grace longer than the test's load can delay anything: the sweeper must
    # have no reason to send, so the wake-up is the delayed message's alone.
    stack = make_stack(clock=SystemClock(), settings=TEST_SETTINGS.with_(sweep_grace_ms=10_000))
    with BackgroundWorker(ALL, stack.settings):
        run, _ = stack.service.start("sleeper", {"seconds": 2})
        parked = wait_status(stack, run.id, "sleeping")
        assert _schedules(stack) == []  # short sleeps use DelaySeconds
        done = wait_status(stack, run.id, "completed", timeout=15)
    assert done.updated_at >= parked.wake_at  # not woken early (the run's own times)
    assert done.dispatches == 0  # woken by the delayed message, not the sweeper


def test_a_sleeper_whose_timer_was_lost_is_woken_by_the_sweeper(
    stack, exec_log: Path, monkeypatch
) -> None:
    from worker._store import AsyncStore

    async def lost(self, *a, **k):
        raise ConnectionError("timer lost")

    monkeypatch.setattr(AsyncStore, "arrange_timer", lost)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("sleeper", {"seconds": 3600})
        wait_status(stack, run.id, "sleeping")
        stack.clock.advance(3600)
        done = wait_status(stack, run.id, "completed", timeout=15)
    assert done.dispatches >= 1


def test_duplicate_wake_ups_continue_the_run_once(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, max_concurrent_workflows=8):
        run, _ = stack.service.start("sleeper", {"seconds": 3600})
        wait_status(stack, run.id, "sleeping")
        stack.clock.advance(3600)
        for _ in range(5):
            stack.dispatcher.send(run.id, "timer")
        wait_status(stack, run.id, "completed", timeout=15)
    assert executions(exec_log).count(f"{run.id}:after") == 1
    assert stack.store.get(run.id).epoch == 2


def test_a_worker_killed_while_the_run_sleeps_does_not_stop_the_wake_up(
    stack, exec_log: Path
) -> None:
    env = worker_env(stack, exec_log)
    run, _ = stack.service.start("sleeper", {"seconds": 3})
    with WorkerProcess(env) as first:
        wait_status(stack, run.id, "sleeping", timeout=20)
        first.kill()
    with WorkerProcess(env) as second:
        wait_status(stack, run.id, "completed", timeout=30)
        second.terminate()
    assert executions(exec_log).count(f"{run.id}:before") == 1


def test_a_sleep_inside_a_step_function_is_a_clear_error(stack) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("misuse", {})
        failed = wait_status(stack, run.id, "failed")
    assert "WorkflowContextError" in failed.error.message
    assert "inside step 'bad'" in failed.error.message


@pytest.mark.parametrize("bad", [-1])
def test_a_negative_sleep_is_refused(bad) -> None:
    from worker._state import duration_ms as _duration_ms

    with pytest.raises(ValueError, match="negative"):
        _duration_ms(bad)


def test_wake_up_is_not_early_when_the_message_arrives_early(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("sleeper", {"seconds": 3600})
        wait_status(stack, run.id, "sleeping")
        stack.dispatcher.send(run.id, "early")
        wait_for(lambda: queued(stack) == 0)  # received, refused as not due, deleted
        assert stack.store.get(run.id).status == Status.SLEEPING
        assert executions(exec_log).count(f"{run.id}:after") == 0
