"""Retries with backoff, per-attempt timeouts, execution timeouts and cancellation."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from orchestrator import Client
from orchestrator.dispatch import schedule_name
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from tests.conftest import executions, worker_env
from tests.helpers import WorkerProcess, queued, wait_for, wait_status
from tests.workflows import ALL
from worker import workflow


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

        def schedules() -> list[str]:
            return [s["Name"] for s in stack.scheduler.list_schedules(GroupName=group)["Schedules"]]

        wait_for(lambda: schedules() == [schedule_name(run.id, 0, 1)])
        stack.clock.advance(3600)
        wait_for(lambda: len(stack.store.steps(run.id)[0].attempts) == 2)
        # A new timer for the second delay (the first deletes itself once fired).
        wait_for(lambda: schedules() == [schedule_name(run.id, 0, 2)])
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
        wait_for(lambda: queued(stack) == 0)  # received and deleted, nothing run
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
    # A 9 s lease (a heartbeat every 3 s, which brings the cancel) and a 6 s step:
    # with the tier's 3 s lease a loaded machine's late heartbeat lost the lease
    # mid-step once (-n 4), and the next claim then delivered the cancel before
    # "work" (a correct run, another history).
    settings = stack.settings.with_(lease_seconds=9)
    with BackgroundWorker(ALL, settings, clock=stack.clock):
        run = client.start("cleanup", {"pause": 6, "marker": str(marker)})
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


# --- cancel racing completion: both contested orders, forced -----------------------------------
_GATES: dict[str, threading.Event] = {}
_ENTERED: dict[str, threading.Event] = {}


def _gate(key: str) -> str:
    _ENTERED[key].set()
    assert _GATES[key].wait(30), "the test never opened the gate"
    return "gated"


@workflow("gated_last_step")
async def gated_last_step(ctx, input: dict[str, str]) -> str:
    """One step that blocks until the test opens its gate, then the end: no
    durable call after the step, so a cancel that arrives during it is never
    delivered."""
    return await ctx.step("only", _gate, input["gate"])


def _gated_run(client: Client, key: str) -> str:
    _GATES[key], _ENTERED[key] = threading.Event(), threading.Event()
    run_id: str = client.start("gated_last_step", {"gate": key})["id"]
    assert _ENTERED[key].wait(20), "the step never started"
    return run_id


def test_cancel_racing_completion_the_owner_finishes_between_the_apis_read_and_write(
    stack, monkeypatch
) -> None:
    """The API reads the run as running; before its cancel request lands, the
    owner completes. The request's condition (`status = running AND epoch = seen`)
    refuses it, the API reads again and answers already_completed."""
    client = Client(stack.api_url)
    seen: list[str] = []
    real_get = stack.store.get

    def get_then_let_it_finish(workflow_id: str):
        run = real_get(workflow_id)
        seen.append(run.status.value)
        if len(seen) == 1 and run.status == Status.RUNNING:
            _GATES["read-then-finish"].set()  # the owner finishes now
            wait_for(lambda: real_get(workflow_id).status == Status.COMPLETED)
        return run  # the first answer is stale by the time the API writes

    with BackgroundWorker([gated_last_step], stack.settings, clock=stack.clock):
        run_id = _gated_run(client, "read-then-finish")
        monkeypatch.setattr(stack.store, "get", get_then_let_it_finish)
        outcome = client.cancel(run_id)["outcome"]
        monkeypatch.undo()
    assert seen == ["running", "completed"]  # the request was refused, then read again
    assert outcome == "already_completed"
    done = stack.store.get(run_id)
    assert done.status == Status.COMPLETED and json.loads(done.output or "null") == "gated"
    assert done.cancel_requested is None  # the refused request wrote nothing


def test_cancel_racing_completion_a_cancel_requested_after_the_last_durable_call_loses(
    stack,
) -> None:
    """The cancel lands while the run's last step is executing: the API records
    the request (outcome requested), but the function returns without another
    durable call, so completion wins and the run keeps its output."""
    client = Client(stack.api_url)
    with BackgroundWorker([gated_last_step], stack.settings, clock=stack.clock):
        run_id = _gated_run(client, "request-then-finish")
        assert client.cancel(run_id)["outcome"] == "requested"
        assert stack.store.get(run_id).cancel_requested is not None
        _GATES["request-then-finish"].set()
        done = wait_status(stack, run_id, "completed", "cancelled")
    assert done.status == Status.COMPLETED and json.loads(done.output or "null") == "gated"
    assert [s.kind.value for s in stack.store.steps(run_id)] == ["step"]  # never delivered
    assert client.cancel(run_id)["outcome"] == "already_completed"
