"""The engine end to end: HTTP API → SQS → worker → DynamoDB, on the embedded stack."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator import Client
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from tests.conftest import executions
from tests.helpers import queued, wait_for, wait_status
from tests.workflows import ALL


def test_happy_path_through_the_http_api(stack, exec_log: Path) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("count", {"steps": 3}, id="happy-1")
        assert run["status"] == "pending"
        done = client.wait("happy-1", timeout=20)
    assert done["status"] == "completed"
    assert done["output"] == {"results": [0, 1, 2]}
    steps = client.steps("happy-1")
    assert [(s["position"], s["name"], s["result"]) for s in steps] == [
        (0, "s0", 0),
        (1, "s1", 1),
        (2, "s2", 2),
    ]
    assert sorted(executions(exec_log)) == ["happy-1:s0", "happy-1:s1", "happy-1:s2"]
    # Terminal: the run left the sweeper's index and holds no lease.
    stored = stack.store.get("happy-1")
    assert stored.due_at is None and stored.owner is None and stored.epoch == 1


def test_a_workflow_that_raises_fails_with_type_message_and_traceback(
    stack, exec_log: Path
) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("failing", {})
        failed = wait_status(stack, run.id, "failed")
    assert failed.error is not None
    assert failed.error.type == "StepFailedError"
    assert "ValueError: boom" in failed.error.message
    assert "Traceback" in failed.error.traceback
    steps = stack.store.steps(run.id)
    assert steps[1].error is not None and steps[1].error.type == "ValueError"


def test_a_step_error_can_be_caught_by_the_workflow(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("caught", {})
        done = wait_status(stack, run.id, "completed")
    assert json.loads(done.output) == "caught ValueError: boom"


def test_input_failing_the_workflow_model_fails_the_run_with_the_validation_message(stack) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("count", {"steps": "many"})
        failed = wait_status(stack, run.id, "failed")
    assert failed.error.type == "InputValidationError"
    assert "steps" in failed.error.message


def test_replay_mismatch_fails_the_run_with_a_non_determinism_error(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("drifting", {})
        failed = wait_status(stack, run.id, "failed", timeout=30)
    assert failed.error.type == "NonDeterminismError"
    assert "'step-v1'" in failed.error.message and "'step-v0'" in failed.error.message
    # The mismatching step never ran: no result was mixed in.
    assert executions(exec_log) == [f"{run.id}:x"]


def test_a_name_no_worker_serves_stays_pending_until_a_worker_for_it_arrives(
    stack, exec_log: Path
) -> None:
    from tests.workflows import failing

    run, _ = stack.service.start("count", {"steps": 1})
    with BackgroundWorker([failing], stack.settings, clock=stack.clock):
        wait_for(lambda: stack.store.get(run.id).dispatches >= 1, timeout=15)  # swept, re-offered
        assert stack.store.get(run.id).status == Status.PENDING
    assert Client(stack.api_url).get(run.id)["status"] == "pending"
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        stack.clock.advance(3600)  # past any re-offer backoff
        wait_status(stack, run.id, "completed", timeout=20)


def test_a_message_delivered_twice_runs_the_steps_once(stack, exec_log: Path) -> None:
    run, _ = stack.service.start("count", {"steps": 4})
    for _ in range(3):
        stack.dispatcher.send(run.id, "duplicate")
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        wait_status(stack, run.id, "completed")
        # Late duplicates for the terminal run are deleted, not run.
        stack.dispatcher.send(run.id, "late")
        wait_for(lambda: queued(stack) == 0, timeout=10)
    assert sorted(executions(exec_log)) == [f"{run.id}:s{i}" for i in range(4)]
    assert stack.store.get(run.id).epoch == 1


def test_a_send_lost_after_the_start_write_is_repaired_by_the_sweeper(
    stack, exec_log: Path
) -> None:
    class LostSend:
        def send(self, *a, **k):
            raise ConnectionError("network gone")

    stack.service.dispatcher = LostSend()
    client = Client(stack.api_url)
    # The worker runs first: one that starts later sends the recent pending runs of
    # names nobody served (worker/_handoff.py), which would repair this one too.
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("count", {"steps": 2})  # the write lands; the send is lost
        assert client.get(run["id"])["status"] == "pending"
        wait_status(stack, run["id"], "completed", timeout=20)
    assert stack.store.get(run["id"]).dispatches >= 1  # it came through the sweeper


def test_graceful_shutdown_releases_the_lease_for_an_immediate_takeover(
    stack, exec_log: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    run, _ = stack.service.start("count", {"steps": 3, "pause": 3, "marker": str(marker)})
    first = BackgroundWorker(ALL, stack.settings, clock=stack.clock, shutdown_grace=0.2).start()
    wait_for(marker.exists)
    first.stop()
    stopped = stack.store.get(run.id)
    assert stopped.status == Status.RUNNING and stopped.lease_until == 0 and stopped.owner is None
    assert stopped.due_at is not None  # released: in the sweeper's index, whatever its age
    assert first.worker.stats["released"] == 1
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        done = wait_status(stack, run.id, "completed", timeout=20)
    assert done.epoch == 2
    # s0 ran once; the interrupted s1 ran again (never recorded); s2 once.
    log = executions(exec_log)
    assert log.count(f"{run.id}:s0") == 1 and log.count(f"{run.id}:s2") == 1


def test_a_worker_receives_no_more_than_its_free_slots(stack, exec_log: Path) -> None:
    ids = [stack.service.start("count", {"steps": 3, "pause": 1})[0].id for _ in range(5)]
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, max_concurrent_workflows=2) as bw:
        peak = 0

        def all_done() -> bool:
            nonlocal peak
            peak = max(peak, bw.worker.busy)
            return all(stack.store.get(i).status == Status.COMPLETED for i in ids)

        wait_for(all_done, timeout=40, interval=0.02)
    assert 1 <= peak <= 2
