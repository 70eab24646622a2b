"""Child runs (`ctx.invoke`): started once with a derived id, the parent parked
until the child's end is delivered (by the child's worker, or by the sweeper
when that delivery is lost), failures raised as ChildWorkflowError, and a
cancelled parent cancelling its children."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.client import Client
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status, StepKind, child_run_id
from tests.conftest import executions
from tests.helpers import wait_status
from tests.workflows import ALL


def test_a_child_run_completes_and_its_output_returns_to_the_parent(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start(
            "parent", {"children": [{"value": "a", "sleep": 3600}], "after": 3600}
        )
        child_id = child_run_id(run.id, "t0.0")
        parked = wait_status(stack, run.id, "waiting")
        assert parked.wait_signals == ("sys:child:t0.0",)  # woken by the child's end, no timer
        child = wait_status(stack, child_id, "sleeping")
        assert child.parent_id == run.id and child.parent_op == "t0.0"
        stack.clock.advance(3601)  # the child wakes, works, ends, and wakes its parent
        wait_status(stack, run.id, "sleeping")  # the parent's own sleep
        stack.clock.advance(3601)
        done = wait_status(stack, run.id, "completed", "failed")
    assert done.status == Status.COMPLETED, done.error
    assert json.loads(done.output) == ["work"]
    # The replay after the parent's sleep did not start a second child.
    log = executions(exec_log)
    assert log.count(f"{child_id}:work") == 1
    client = Client(stack.api_url)
    children = client.list(parent_id=run.id)
    assert [c["id"] for c in children["workflows"]] == [child_id]
    assert client.get(child_id)["parent_id"] == run.id
    invoke = next(s for s in client.steps(run.id) if s["kind"] == "invoke")
    assert invoke["child_id"] == child_id and invoke["child_status"] == "completed"
    assert stack.store.get(child_id).parent_notified
    assert stack.store.get(child_id).due_at is None  # out of the sweeper's index


def test_a_failed_child_raises_child_workflow_error_in_the_parent(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start(
            "parent", {"children": [{"value": "a"}, {"value": "b", "fail": True}], "after": 0}
        )
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    assert json.loads(done.output) == ["work", "failed: StepFailedError"]


def test_cancelling_a_parent_cancels_its_children(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("parent", {"children": [{"sleep": 3600}, {"sleep": 3600}]})
        wait_status(stack, run.id, "waiting")
        kids = [child_run_id(run.id, f"t{i}.0") for i in range(2)]
        for k in kids:
            wait_status(stack, k, "sleeping")
        _, outcome = stack.service.cancel(run.id, "no longer needed")
        assert outcome == "cancelled"
        for k in kids:
            child = wait_status(stack, k, "cancelled")
            assert child.error is not None and "parent" in child.error.message
    assert executions(exec_log) == []


def test_a_lost_delivery_of_a_childs_end_is_made_by_the_sweeper(
    stack, exec_log: Path, monkeypatch
) -> None:
    import worker._runner as worker_module

    async def lost(*args, **kwargs) -> None:
        raise ConnectionError("the delivery was lost")

    monkeypatch.setattr(worker_module, "notify_parent", lost)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("parent", {"children": [{"sleep": 60}], "after": 0})
        child_id = child_run_id(run.id, "t0.0")
        wait_status(stack, run.id, "waiting")
        wait_status(stack, child_id, "sleeping")
        stack.clock.advance(61)
        ended = wait_status(stack, child_id, "completed")
        assert not ended.parent_notified and ended.due_at is not None  # due for the sweeper
        assert stack.store.get(run.id).status == Status.WAITING
        stack.clock.advance(10)  # past the notify grace: the sweeper's due pass delivers it
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    assert json.loads(done.output) == ["work"]
    assert stack.store.get(child_id).parent_notified


def test_the_end_of_a_child_is_delivered_once(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("parent", {"children": [{"value": "x"}], "after": 3600})
        child_id = child_run_id(run.id, "t0.0")
        wait_status(stack, run.id, "sleeping", timeout=30)
        child = stack.store.get(child_id)
        # A second delivery (a sweeper racing the worker) changes nothing.
        assert stack.store.notify_parent(child, grace_ms=1000) == (False, None)
        assert stack.store.signals(run.id, "sys:child:t0.0") == []  # consumed
        items = stack.ddb.query(
            TableName=stack.settings.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues={
                ":pk": {"S": f"WF#{run.id}"},
                ":p": {"S": "SIG#sys:child:t0.0#"},
            },
        )["Items"]
        assert len(items) == 1 and "consumed_at" in items[0]  # one delivery, consumed once
    steps = {s.op_id: s for s in stack.store.steps(run.id)}
    assert steps["t0.0"].kind == StepKind.INVOKE and steps["t0.0"].resolved


def test_a_distributed_map_runs_each_item_as_a_child_and_replays_from_its_record(
    stack, exec_log: Path
) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, max_concurrent_workflows=6):
        run, _ = stack.service.start(
            "fan-out",
            {
                "items": 6,
                "fail": [4],
                "max_concurrency": 3,
                "tolerated_failure_count": 2,
                "after": 3600,
            },
        )
        wait_status(stack, run.id, "sleeping", timeout=60)
        stack.clock.advance(3601)
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    out = json.loads(done.output)
    assert out["results"] == ["work"] * 5
    assert out["statuses"] == ["succeeded"] * 4 + ["failed", "succeeded"]
    assert out["errors"] == ["StepFailedError"] and out["reason"] == "all_completed"
    kids = [child_run_id(run.id, f"0.{i}") for i in range(6)]
    log = executions(exec_log)
    assert all(log.count(f"{k}:work") == 1 for k in kids)  # each child ran once
    for k in kids:
        child = stack.store.get(k)
        assert child.parent_id == run.id and child.parent_polls and child.due_at is None
    assert [c.id for c in stack.store.children(run.id)] == kids
    # Children did not write to the parent: its inbox is empty, its history small.
    assert [s.op_id for s in stack.store.steps(run.id)] == ["0", "1"]


def test_a_fail_fast_distributed_map_cancels_the_children_in_flight(stack, exec_log: Path) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, max_concurrent_workflows=6):
        run, _ = stack.service.start("fan-out", {"items": 4, "fail": [0]})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
        assert done.status == Status.COMPLETED, done.error
        out = json.loads(done.output)
        assert out["reason"] == "failure_tolerance_exceeded" and out["statuses"][0] == "failed"
        for i, status in enumerate(out["statuses"]):
            if status == "started":
                wait_status(stack, child_run_id(run.id, f"0.{i}"), "cancelled", "completed")


def test_a_distributed_map_sees_children_end_behind_its_oldest_stuck_ones(
    stack, exec_log: Path, monkeypatch
) -> None:
    """A poll reads a window of the children in flight: the oldest, and a slice
    of the others that rotates. With the window shrunk to 8 and the 10 oldest
    children asleep for an hour, only the rotating slice sees the other 30 end;
    the map decides at 30 successes without the clock ever reaching the hour."""
    from worker.operations import distributed

    monkeypatch.setattr(distributed, "POLL_WINDOW", 8)
    monkeypatch.setattr(distributed, "POLL_ROTATING", 3)
    monkeypatch.setattr(distributed, "POLL_MAX_S", 0.5)
    spec = {"items": 40, "sleep": list(range(10)), "max_concurrency": 30, "min_successful": 30}
    # One process runs the parent, its 40 children and the stack: on a loaded
    # machine a 3 s lease is lost again and again (each loss costs the run its
    # message's visibility), and a child run twice breaks the count below.
    settings = stack.settings.with_(lease_seconds=30)
    with BackgroundWorker(ALL, settings, clock=stack.clock, max_concurrent_workflows=12):
        run, _ = stack.service.start("fan-out", spec)
        done = wait_status(stack, run.id, "completed", "failed", timeout=120)
        assert done.status == Status.COMPLETED, done.error
        out = json.loads(done.output)
        assert out["reason"] == "min_successful_reached"
        assert out["statuses"][:10] == ["started"] * 10  # asleep when the map decided
        assert out["statuses"][10:] == ["succeeded"] * 30
        for i in range(10):  # the map cancels what it decided without
            wait_status(stack, child_run_id(run.id, f"0.{i}"), "cancelled")
    log = executions(exec_log)
    assert all(log.count(f"{child_run_id(run.id, f'0.{i}')}:work") == 1 for i in range(10, 40))
    assert not any(f"{child_run_id(run.id, f'0.{i}')}:work" in log for i in range(10))
