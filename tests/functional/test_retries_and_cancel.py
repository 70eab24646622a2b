"""Retries with backoff, per-attempt timeouts, execution timeouts and cancellation."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

from orchestrator import Client
from orchestrator.dispatch import schedule_name
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from tests.conftest import executions, worker_env
from tests.helpers import WorkerProcess, wait_for, wait_status
from tests.workflows import ALL


def test_a_step_retried_until_it_succeeds_on_the_third_attempt_records_every_attempt(
    stack, exec_log: Path
) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("retrying", {"fail_times": 2})
        done = wait_status(stack, run.id, "completed")
    assert json.loads(done.output) == "ok after 3"
    (step,) = stack.store.steps(run.id)
    assert [a["attempt"] for a in step.attempts] == [1, 2, 3]
    assert [a.get("error", {}).get("type") for a in step.attempts] == [
        "ConnectionError",
        "ConnectionError",
        None,
    ]
    assert all(a["finished_at"] >= a["started_at"] for a in step.attempts)
    assert (
        step.attempts[1]["started_at"] >= step.attempts[0]["finished_at"] + 50
    )  # the backoff was waited
    view = Client(stack.api_url).steps(run.id)[0]
    assert (
        len(view["attempts"]) == 3 and view["attempts"][0]["error"]["message"] == "attempt 1 failed"
    )


def test_non_retryable_errors_fail_the_step_at_once(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        by_type, _ = stack.service.start("declining", {"how": "type"})
        by_error, _ = stack.service.start("declining", {"how": "error"})
        a = wait_status(stack, by_type.id, "failed")
        b = wait_status(stack, by_error.id, "failed")
    assert "CardDeclinedError" in a.error.message and "NonRetryableError" in b.error.message
    assert executions(exec_log).count(f"{by_type.id}:decline") == 1
    assert executions(exec_log).count(f"{by_error.id}:decline") == 1


def test_exhausted_retries_are_raised_into_the_workflow_which_can_compensate(
    stack, exec_log: Path
) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("compensating", {})
        done = wait_status(stack, run.id, "completed")
    assert json.loads(done.output) == "compensated after ConnectionError"
    charge, refund = stack.store.steps(run.id)
    assert len(charge.attempts) == 2 and charge.error.type == "ConnectionError"
    assert refund.name == "refund"


def test_a_long_backoff_parks_the_run_and_survives_a_worker_kill(stack, exec_log: Path) -> None:
    """6 s is over the in-worker limit (5 s): the retry parks through the timer
    path. The worker is killed while the run is parked; the next worker goes on
    with attempt 2 at the recorded time."""
    env = worker_env(stack, exec_log)
    run, _ = stack.service.start("retrying", {"fail_times": 1, "interval": 6})
    with WorkerProcess(env) as first:
        parked = wait_status(stack, run.id, "sleeping", timeout=30)
        first.kill()
    (state,) = stack.store.steps(run.id)
    assert not state.resolved and len(state.attempts) == 1
    assert (
        state.retry_at == parked.wake_at
        and state.retry_at - state.attempts[0]["finished_at"] == 6000
    )
    with WorkerProcess(env) as second:
        done = wait_status(stack, run.id, "completed", timeout=40)
        second.terminate()
    assert json.loads(done.output) == "ok after 2"  # attempt 2, not attempt 1 again
    (step,) = stack.store.steps(run.id)
    assert [a["attempt"] for a in step.attempts] == [1, 2]
    assert step.attempts[1]["started_at"] >= state.retry_at  # the delay was not reset


def test_an_hour_long_backoff_waits_on_a_schedule_named_for_the_attempt(
    stack, exec_log: Path
) -> None:
    group = stack.settings.schedule_group
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("retrying", {"fail_times": 2, "interval": 3600})
        wait_status(stack, run.id, "sleeping")
        (sched,) = wait_for(lambda: stack.scheduler.list_schedules(GroupName=group)["Schedules"])
        assert sched["Name"] == schedule_name(run.id, 0, 1)
        stack.clock.advance(3600)
        wait_for(lambda: len(stack.store.steps(run.id)[0].attempts) == 2)
        (sched,) = wait_for(lambda: stack.scheduler.list_schedules(GroupName=group)["Schedules"])
        assert sched["Name"] == schedule_name(run.id, 0, 2)  # a new timer for the second delay
        stack.clock.advance(7200)
        done = wait_status(stack, run.id, "completed")
    assert json.loads(done.output) == "ok after 3"


def test_an_attempt_that_overruns_its_timeout_fails_and_is_retried(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("retrying", {"pause": 1.0, "timeout": 0.2, "max_attempts": 2})
        failed = wait_status(stack, run.id, "failed")
    (step,) = stack.store.steps(run.id)
    assert [a["error"]["type"] for a in step.attempts] == ["StepTimeoutError", "StepTimeoutError"]
    assert all(a["finished_at"] - a["started_at"] < 900 for a in step.attempts)
    assert "StepTimeoutError" in failed.error.message


def test_the_execution_timeout_fires_while_the_run_sleeps(stack, exec_log: Path) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("sleeper", {"seconds": 86_400}, execution_timeout=60)
        parked = wait_status(stack, run["id"], "sleeping")
        assert parked.wake_at == parked.deadline_at  # woken at the deadline, not after a day
        stack.clock.advance(61)
        failed = wait_status(stack, run["id"], "failed", timeout=20)
    assert failed.error.type == "ExecutionTimeoutError"
    assert executions(exec_log).count(f"{run['id']}:after") == 0


def test_cancel_a_pending_run(stack) -> None:
    client = Client(stack.api_url)
    run = client.start("count", {})
    reply = client.cancel(run["id"], reason="not needed")
    assert reply["outcome"] == "cancelled" and reply["status"] == "cancelled"
    stored = stack.store.get(run["id"])
    assert (
        stored.status == Status.CANCELLED
        and stored.error.message == "not needed"
        and stored.due_at is None
    )
    assert client.cancel(run["id"])["outcome"] == "already_cancelled"  # harmless, and says so


def test_cancel_a_sleeping_run_deletes_its_schedule(stack, exec_log: Path) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("sleeper", {"seconds": 86_400})
        wait_status(stack, run["id"], "sleeping")
        wait_for(
            lambda: stack.scheduler.list_schedules(GroupName=stack.settings.schedule_group)[
                "Schedules"
            ]
        )
        assert client.cancel(run["id"])["outcome"] == "cancelled"
        assert (
            stack.scheduler.list_schedules(GroupName=stack.settings.schedule_group)["Schedules"]
            == []
        )
        stack.clock.advance(86_400)
        stack.dispatcher.send(run["id"], "timer")  # a late wake-up is dropped
        time.sleep(1)
    assert stack.store.get(run["id"]).status == Status.CANCELLED
    assert executions(exec_log).count(f"{run['id']}:after") == 0


def test_cancel_a_waiting_run(stack, exec_log: Path) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("waiter", {})
        wait_status(stack, run["id"], "waiting")
        assert client.cancel(run["id"])["outcome"] == "cancelled"
    assert stack.store.get(run["id"]).status == Status.CANCELLED


def test_cancel_a_running_run_runs_its_cleanup_steps(stack, exec_log: Path, tmp_path: Path) -> None:
    client = Client(stack.api_url)
    marker = tmp_path / "started"
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("cleanup", {"pause": 2.5, "marker": str(marker)})
        wait_for(marker.exists)
        reply = client.cancel(run["id"], reason="operator said stop")
        assert reply["outcome"] == "requested"
        assert client.cancel(run["id"])["outcome"] == "already_requested"
        done = wait_status(stack, run["id"], "cancelled", timeout=20)
    assert done.error.type == "Cancelled" and done.error.message == "operator said stop"
    steps = stack.store.steps(run["id"])
    assert [(s.name, s.kind.value) for s in steps] == [
        ("work", "step"),
        ("cancel", "cancel"),
        ("undo", "step"),
    ]
    log = executions(exec_log)
    assert f"{run['id']}:undo" in log and f"{run['id']}:more" not in log


def test_cancel_racing_completion_ends_in_exactly_one_terminal_state(stack, exec_log: Path) -> None:
    client = Client(stack.api_url)
    rng = random.Random(3)
    outcomes: dict[str, str] = {}
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, max_concurrent_workflows=8):
        ids = [client.start("count", {"steps": 2})["id"] for _ in range(20)]

        def cancel(run_id: str, delay: float) -> None:
            time.sleep(delay)
            outcomes[run_id] = Client(stack.api_url).cancel(run_id)["outcome"]

        threads = [threading.Thread(target=cancel, args=(i, rng.uniform(0, 0.3))) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        finals = {i: wait_status(stack, i, "completed", "cancelled", timeout=30) for i in ids}
    for i, run in finals.items():
        if outcomes[i] == "cancelled":
            assert run.status == Status.CANCELLED and run.output is None
        elif outcomes[i] == "already_completed":
            assert run.status == Status.COMPLETED
        else:  # requested while running: either its next durable call saw it, or completion won
            assert outcomes[i] == "requested"
            assert run.status in (Status.CANCELLED, Status.COMPLETED)
            assert (run.output is None) == (run.status == Status.CANCELLED)
