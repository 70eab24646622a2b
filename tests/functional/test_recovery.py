"""Redrive and fork (orchestrator/store/recovery.py) end to end: HTTP API,
worker, DynamoDB."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Client
from orchestrator.errors import ConflictError
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from orchestrator.store import requests as q
from tests.conftest import executions
from tests.helpers import wait_status
from tests.workflows import record
from worker import NO_RETRY, workflow

BUG = {"on": True}


def buggy(run_id: str, step: str) -> str:
    record(run_id, step)
    if BUG["on"]:
        raise ValueError("bug")
    return step


@workflow("fixable")
async def fixable(ctx: Any) -> str:
    await ctx.step("a", record, ctx.workflow_id, "a")
    await ctx.step("b", buggy, ctx.workflow_id, "b", retry=NO_RETRY)
    await ctx.step("c", record, ctx.workflow_id, "c")
    return "done"


@workflow("mapper")
async def mapper(ctx: Any, input: dict[str, Any]) -> list[Any]:
    async def item(c: Any, x: int, i: int) -> int:
        await c.step("one", record, ctx.workflow_id, f"{i}.one")
        await c.step("two", record, ctx.workflow_id, f"{i}.two")
        return x * input.get("factor", 1)

    await ctx.step("first", record, ctx.workflow_id, "first")
    batch = await ctx.map("items", [1, 2, 3], item)
    await ctx.step("last", record, ctx.workflow_id, "last")
    return list(batch.get_results())


def _ran(exec_log: Path, run_id: str) -> list[str]:
    return sorted(e.split(":", 1)[1] for e in executions(exec_log) if e.startswith(run_id + ":"))


def _failed(stack: Any, run_id: str) -> Any:
    BUG["on"] = True
    with BackgroundWorker([fixable], stack.settings, clock=stack.clock):
        stack.service.start("fixable", {}, run_id)
        return wait_status(stack, run_id, "failed")


def test_redrive_after_a_fixed_bug_replays_successes_and_reruns_the_failed_step(
    stack, exec_log: Path
) -> None:
    client = Client(stack.api_url)
    failed = _failed(stack, "r1")
    assert failed.error.type == "StepFailedError"
    BUG["on"] = False  # the fix is deployed
    with BackgroundWorker([fixable], stack.settings, clock=stack.clock):
        reopened = client.redrive("r1")
        assert reopened["status"] == "pending" and reopened["redrive_count"] == 1
        done = client.wait("r1", timeout=30)
    assert done["status"] == "completed" and done["output"] == "done"
    assert _ran(exec_log, "r1") == ["a", "b", "b", "c"]  # a once; b failed, then again
    assert done["earlier_outcomes"][0]["status"] == "failed"
    assert done["earlier_outcomes"][0]["error"]["type"] == "StepFailedError"
    # A completed run is refused, and nothing is written.
    before = stack.store.get("r1")
    with pytest.raises(ConflictError):
        client.redrive("r1")
    assert stack.store.get("r1") == before


def test_redrive_is_fenced_against_the_old_attempt_and_a_concurrent_redrive(
    stack, exec_log: Path
) -> None:
    failed = _failed(stack, "r2")
    old_epoch = failed.epoch
    BUG["on"] = False
    # Two redrives at once: one wins, the other is refused (409) and writes nothing.
    outcomes: list[str] = []
    gate = threading.Barrier(2)

    def redrive() -> None:
        gate.wait()
        try:
            Client(stack.api_url).redrive("r2")
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=redrive) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    reopened = stack.store.get("r2")
    assert reopened.status == Status.PENDING and reopened.redrive_count == 1
    assert reopened.epoch == old_epoch + 1
    # The owner of the old attempt, late: every write it could make is refused.
    table, now = stack.settings.table, stack.clock.now_ms()
    late = [
        q.heartbeat(table, "r2", epoch=old_epoch, lease_until=now + 30_000),
        q.finish(table, "r2", epoch=old_epoch, now=now, status=Status.COMPLETED, output='"x"'),
        q.park_sleep(table, "r2", epoch=old_epoch, now=now, wake_at=now + 1, due_at=now + 2),
        q.release(table, "r2", epoch=old_epoch, due_at=now),
    ]
    for req in late:
        with pytest.raises(stack.ddb.exceptions.ConditionalCheckFailedException):
            stack.ddb.update_item(**req)
    assert stack.store.get("r2") == reopened
    with BackgroundWorker([fixable], stack.settings, clock=stack.clock):
        assert wait_status(stack, "r2", "completed").output == '"done"'
    with pytest.raises(ConflictError):  # running or completed: 409
        stack.service.get("r2") and Client(stack.api_url).redrive("r2")


def test_redrive_of_a_cancelled_waiting_run_waits_again(stack) -> None:
    from orchestrator.cli import main
    from tests.workflows import waiter

    with BackgroundWorker([waiter], stack.settings, clock=stack.clock):
        stack.service.start("waiter", {}, "r3")
        wait_status(stack, "r3", "waiting")
        stack.service.cancel("r3")
        wait_status(stack, "r3", "cancelled")
        assert main(["--api-url", stack.api_url, "redrive", "r3"]) == 0
        wait_status(stack, "r3", "waiting")
        stack.service.signal("r3", "go", {"ok": True})
        assert wait_status(stack, "r3", "completed").redrive_count == 1


def test_fork_from_an_operation_inside_a_map(no_batch_writes, exec_log: Path) -> None:
    """The API copies the records without BatchWriteItem, which its role may not
    call (`no_batch_writes`)."""
    stack = no_batch_writes
    client = Client(stack.api_url)
    with BackgroundWorker([mapper], stack.settings, clock=stack.clock):
        client.start("mapper", {}, id="m1")
        assert client.wait("m1", timeout=30)["output"] == [1, 2, 3]
        before = len(executions(exec_log))
        # From item 1's second step: item 0 and item 1's first step are kept.
        fork = client.fork("m1", from_operation="1.1.1", input={"factor": 10}, id="m1-f")
        assert fork["forked_from"] == {"id": "m1", "operation": "1.1.1"}
        done = client.wait("m1-f", timeout=30)
    assert done["status"] == "completed"
    # Workflow code runs again with the new input; item 0's steps and item 1's
    # first step replay from the copied records (they do not execute).
    assert done["output"] == [10, 20, 30]
    assert sorted(e.split(":", 1)[1] for e in executions(exec_log)[before:]) == [
        "1.two",
        "2.one",
        "2.two",
        "last",
    ]
    with pytest.raises(Exception, match="no operation"):
        client.fork("m1", from_operation="9")
