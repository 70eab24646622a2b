"""A late record: a step put that its owner sent while it still held the lease
and that landed after the run moved on (a takeover, a redrive, a continue as
new). No guarantee rests on the owner's own lease check, so each interleaving
is forced here by sending the old owner's request after the move, on the moto
server. The store is what keeps each harmless (docs/architecture.md, "Records
of an earlier attempt")."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Client
from orchestrator import resources as r
from orchestrator.errors import ConflictError
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import StepKind, StepRecord
from orchestrator.store import record_requests as rq
from orchestrator.store import recovery
from orchestrator.store import requests as q
from orchestrator.store.codec import run_pk, step_sk, to_item
from tests.conftest import executions
from tests.helpers import wait_status
from tests.workflows import record
from worker import NO_RETRY, workflow

BROKEN = {"on": True}


def flaky(run_id: str, step: str) -> str:
    record(run_id, step)
    if BROKEN["on"]:
        raise ValueError("downstream is down")
    return step


@workflow("late-redriven")
async def redriven(ctx: Any) -> list[str]:
    a = await ctx.step("a", record, ctx.workflow_id, "a", "a")
    b = await ctx.step("b", flaky, ctx.workflow_id, "b", retry=NO_RETRY)
    c = await ctx.step("c", record, ctx.workflow_id, "c", "c")
    return [a, b, c]


@workflow("late-continued")
async def continued(ctx: Any, input: dict[str, Any]) -> str:
    if input.get("generation", 0) == 0:
        await ctx.step("first", record, ctx.workflow_id, "g0", "g0")
        return await ctx.continue_as_new({"generation": 1})
    await ctx.wait_for_signal("hold", "go")
    return await ctx.step("then", record, ctx.workflow_id, "g1", "g1")


def _ran(exec_log: Path, run_id: str) -> list[str]:
    return [e.split(":", 1)[1] for e in executions(exec_log) if e.startswith(run_id + ":")]


def _late_put(stack: Any, run_id: str, op_id: str, name: str, epoch: int, result: str) -> None:
    """The old owner's put, as its worker built it before the move (run attempt 0)."""
    rec = StepRecord(
        op_id, name, StepKind.STEP, epoch, stack.clock.now_ms(), result=result, resolved=True
    )
    stack.ddb.put_item(**rq.put_step(stack.settings.table, run_id, rec))  # it lands


def test_a_late_record_of_the_attempt_before_a_redrive_is_never_replayed(
    stack, exec_log: Path
) -> None:
    BROKEN["on"] = True
    with BackgroundWorker([redriven], stack.settings, clock=stack.clock):
        stack.service.start("late-redriven", {}, "lr1")
        failed = wait_status(stack, "lr1", "failed", timeout=90)
    BROKEN["on"] = False  # the downstream is back
    Client(stack.api_url).redrive("lr1")
    # The old attempt's owner, late: b's position (whose failure the redrive
    # deleted) and c's (never recorded) were free, so both puts land.
    _late_put(stack, "lr1", "1", "b", failed.epoch, '"stale b"')
    _late_put(stack, "lr1", "2", "c", failed.epoch, '"stale c"')
    # No reader sees them: the redrive carried a over to attempt 1, not these.
    assert [(s.name, s.run_attempt) for s in stack.store.steps("lr1")] == [("a", 1)]
    with BackgroundWorker([redriven], stack.settings, clock=stack.clock):
        done = wait_status(stack, "lr1", "completed", timeout=90)
    assert json.loads(done.output) == ["a", "b", "c"]
    # a replayed; b failed once, then ran again; c ran: neither late record was used.
    assert _ran(exec_log, "lr1") == ["a", "b", "b", "c"]
    steps = stack.store.steps("lr1")
    assert [(s.name, s.result, s.run_attempt) for s in steps] == [
        ("a", '"a"', 1),
        ("b", '"b"', 1),
        ("c", '"c"', 1),
    ]


def test_an_earlier_attempts_late_put_cannot_replace_a_later_attempts_record(stack) -> None:
    """The other order: the new attempt recorded the position first; the old
    owner's put arrives after it and is refused, whatever it holds."""
    table, now = stack.settings.table, stack.clock.now_ms()
    mine = StepRecord("0", "s", StepKind.STEP, 3, now, result='"new"', resolved=True, run_attempt=1)
    stack.ddb.put_item(**rq.put_step(table, "lr2", mine))
    late = StepRecord("0", "s", StepKind.STEP, 1, now, result='"old"', resolved=True)
    unresolved = StepRecord("0", "s", StepKind.STEP, 1, now, attempts=[{}, {}])
    for rec in (late, unresolved):
        with pytest.raises(stack.ddb.exceptions.ConditionalCheckFailedException):
            stack.ddb.put_item(**rq.put_step(table, "lr2", rec))
    item = stack.ddb.get_item(
        TableName=table, Key=to_item({"pk": run_pk("lr2"), "sk": step_sk("0")})
    )["Item"]
    assert item["result"] == {"S": '"new"'} and item["run_attempt"] == {"N": "1"}
    # And a later attempt replaces an earlier attempt's record (its own first write).
    again = StepRecord(
        "0", "s", StepKind.STEP, 5, now, result='"newer"', resolved=True, run_attempt=2
    )
    stack.ddb.put_item(**rq.put_step(table, "lr2", again))
    item = stack.ddb.get_item(
        TableName=table, Key=to_item({"pk": run_pk("lr2"), "sk": step_sk("0")})
    )["Item"]
    assert item["result"] == {"S": '"newer"'}


def test_a_redrive_carries_over_more_records_than_one_transaction_holds(stack) -> None:
    """150 kept records: the carries that do not fit beside the run's update go in
    transactions of their own, first; every one reaches attempt 1."""
    BROKEN["on"] = True
    with BackgroundWorker([redriven], stack.settings, clock=stack.clock):
        stack.service.start("late-redriven", {}, "lr3")
        failed = wait_status(stack, "lr3", "failed", timeout=90)
    table = stack.settings.table
    for i in range(150):  # more successes, as a long run would have recorded
        rec = StepRecord(f"t{i}.0", f"x{i}", StepKind.STEP, failed.epoch, 1, '"x"', resolved=True)
        stack.ddb.put_item(**rq.put_step(table, "lr3", rec))
    assert recovery.TRANSACTION_ITEMS < 152
    Client(stack.api_url).redrive("lr3")
    steps = stack.store.steps("lr3")
    assert len(steps) == 151 and {s.run_attempt for s in steps} == {1}
    assert "b" not in {s.name for s in steps}  # the failure is gone


def test_a_late_record_of_an_ended_generation_is_never_replayed(stack, exec_log: Path) -> None:
    with BackgroundWorker([continued], stack.settings, clock=stack.clock):
        stack.service.start("late-continued", {}, "lr4")
        waiting = wait_status(stack, "lr4", "waiting", timeout=90)
        assert waiting.generation == 1
        # Generation 0's owner, late, at the position generation 1 reaches next.
        _late_put(stack, "lr4", "1", "then", waiting.epoch - 1, '"stale"')
        Client(stack.api_url).signal("lr4", "go", None)
        done = wait_status(stack, "lr4", "completed", timeout=90)
    assert done.output == '"g1"'
    assert _ran(exec_log, "lr4") == ["g0", "g1"]
    assert [s.name for s in stack.store.steps("lr4")] == ["hold", "then"]


class _Held:
    """A DynamoDB client whose first put waits for `go`: a fork held between
    its read of the origin and its first write."""

    def __init__(self, ddb: Any) -> None:
        self._ddb, self.reached, self.go = ddb, threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._ddb, name)
        if name != "put_item" or self.reached.is_set():
            return call

        def held(**kw: Any) -> Any:
            self.reached.set()
            assert self.go.wait(30)
            return call(**kw)

        return held


def _completed_origin(stack: Any, run_id: str) -> None:
    BROKEN["on"] = False
    with BackgroundWorker([redriven], stack.settings, clock=stack.clock):
        stack.service.start("late-redriven", {}, run_id)
        wait_status(stack, run_id, "completed")


def test_two_forks_into_one_id_never_mix_their_records(stack) -> None:
    """Fork A (keeping a and b) is held before its first write while fork B
    (keeping a) takes the id. Whichever wins, the new run's history is exactly
    its own fork's prefix: the loser is refused before it writes a record."""
    _completed_origin(stack, "lr5")
    table, held = stack.settings.table, _Held(stack.ddb)
    outcome: dict[str, Any] = {}

    def fork_a() -> None:
        try:
            outcome["a"] = recovery.fork(
                held, table, stack.clock, "lr5", from_operation="2", input_text=None, new_id="lr5-f"
            )
        except ConflictError as e:
            outcome["a"] = e

    a = threading.Thread(target=fork_a)
    a.start()
    assert held.reached.wait(30)  # A read the origin and checked the id: it is free
    b = recovery.fork(
        stack.ddb, table, stack.clock, "lr5", from_operation="1", input_text=None, new_id="lr5-f"
    )
    held.go.set()
    a.join(30)
    assert b.id == "lr5-f" and isinstance(outcome["a"], ConflictError)
    assert [s.name for s in stack.store.steps("lr5-f")] == ["a"]  # B's prefix, nothing of A's


class _Stops(_Held):
    """A fork that stops (its process dies) at its first record's put, after
    the run's."""

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._ddb, name)
        if name != "put_item":
            return call

        def put(**kw: Any) -> Any:
            if kw["Item"][r.SK]["S"] != r.RUN_SK:
                raise RuntimeError("the API stopped here")
            return call(**kw)

        return put


def test_a_fork_stopped_half_way_is_claimed_by_nobody_until_the_same_fork_completes_it(
    stack,
) -> None:
    _completed_origin(stack, "lr6")
    table = stack.settings.table
    with pytest.raises(RuntimeError):
        recovery.fork(
            _Stops(stack.ddb),
            table,
            stack.clock,
            "lr6",
            from_operation="2",
            input_text=None,
            new_id="lr6-f",
        )
    # No worker claims it, whatever the message or the sweeper offers.
    now = stack.clock.now_ms()
    claim = q.claim(table, "lr6-f", owner="w", now=now, lease_ms=30_000, names=["late-redriven"])
    with pytest.raises(stack.ddb.exceptions.ConditionalCheckFailedException):
        stack.ddb.update_item(**claim)
    # The id is taken: another fork is refused, and so is a start with another input.
    with pytest.raises(ConflictError):
        recovery.fork(
            stack.ddb,
            table,
            stack.clock,
            "lr6",
            from_operation="1",
            input_text=None,
            new_id="lr6-f",
        )
    # The same fork again completes it; then it runs.
    recovery.fork(
        stack.ddb, table, stack.clock, "lr6", from_operation="2", input_text=None, new_id="lr6-f"
    )
    assert [s.name for s in stack.store.steps("lr6-f")] == ["a", "b"]
    stack.service.dispatch("lr6-f", "fork")
    with BackgroundWorker([redriven], stack.settings, clock=stack.clock):
        assert json.loads(wait_status(stack, "lr6-f", "completed", timeout=90).output) == [
            "a",
            "b",
            "c",
        ]


def test_an_earlier_attempts_timeout_cannot_resolve_the_current_attempts_wait(stack) -> None:
    table, now = stack.settings.table, stack.clock.now_ms()
    wait = StepRecord("0", "w", StepKind.WAIT, 3, now, signal="go", wake_at=now, run_attempt=1)
    stack.ddb.put_item(**rq.put_step(table, "lr7", wait))
    with pytest.raises(stack.ddb.exceptions.ConditionalCheckFailedException):
        stack.ddb.update_item(**rq.resolve_wait_timeout(table, "lr7", op_id="0", now=now))
    stack.ddb.update_item(**rq.resolve_wait_timeout(table, "lr7", op_id="0", now=now, attempt=1))
    item = stack.ddb.get_item(
        TableName=table, Key=to_item({"pk": run_pk("lr7"), "sk": step_sk("0")})
    )["Item"]
    assert item["timed_out"] == {"BOOL": True}


def test_a_redrive_leaves_the_records_of_ended_generations_as_they_were(stack) -> None:
    with BackgroundWorker([continued], stack.settings, clock=stack.clock):
        stack.service.start("late-continued", {}, "lr8")
        assert wait_status(stack, "lr8", "waiting", timeout=90).generation == 1
        Client(stack.api_url).cancel("lr8")
        wait_status(stack, "lr8", "cancelled", timeout=90)
    Client(stack.api_url).redrive("lr8")
    ended = stack.store.steps("lr8", 0)
    assert [s.name for s in ended] == ["first"]
