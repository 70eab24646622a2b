"""Batched checkpoints (`checkpoint="batched"`, worker/_checkpoints.py): many
tiny steps cost a few writes (a run that never parks, only its claim and its
terminal write, which carries the results), a replay after a park runs no
recorded step again, a SIGKILL re-runs exactly the operations whose results
were not yet written, a redriven run replays the results its end carried, and
a batched map records its items in a few items. The stale owner's refused
flush is a store contract case (tests/contract/test_store_contract.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from orchestrator import resources as r
from orchestrator.api.recovery import redrive
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from tests.conftest import executions, worker_env
from tests.helpers import WorkerProcess, wait_for, wait_status
from tests.workflows import ALL

WRITES = ("PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem", "DeleteItem")


@pytest.fixture
def ddb_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """DynamoDB write requests sent by clients created during the test (the
    worker's), by operation and by the sort key's kind (the worker registry's
    puts are per worker, not per run)."""
    sent: Counter[str] = Counter()

    def count(event_name: str, params: Any = None, **_: Any) -> None:
        op = event_name.split(".")[2]
        if op in WRITES and "W#" not in str(params):
            sent[op] += 1

    original = botocore.session.Session.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.register("provide-client-params.dynamodb", count, unique_id="test-ddb-writes")

    monkeypatch.setattr(botocore.session.Session, "__init__", init)
    yield sent


def test_forty_tiny_steps_take_one_batch_and_replay_as_recorded(
    stack: Any, ddb_writes: Counter[str]
) -> None:
    # A lease of a minute: no heartbeat (an UpdateItem too) falls inside the run,
    # however slow a loaded machine makes it.
    settings = stack.settings.with_(lease_seconds=60)
    with BackgroundWorker(ALL, settings, clock=stack.clock):
        run, _ = stack.service.start("tiny", {"steps": 40})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    assert done.status == Status.COMPLETED, done.error
    assert done.output == str(sum(range(40)))
    # The claim and the finish, which carries the 40 results: no step put, no flush.
    assert ddb_writes == Counter({"UpdateItem": 2}), ddb_writes
    steps = stack.store.steps(run.id)
    assert [(s.op_id, s.name, s.result) for s in steps] == [
        (str(i), f"t{i}", str(i)) for i in range(40)
    ]
    assert stack.store.get(run.id).last_batch is not None  # where they are


def test_the_replay_after_a_park_runs_no_recorded_step_again(
    stack: Any, exec_log: Path, ddb_writes: Counter[str]
) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        # A minute's nap, ended by the skipping clock: a short one could already
        # be due when the run would park, on a loaded machine, and not park at all.
        run, _ = stack.service.start("tiny", {"steps": 12, "nap_after": 6, "nap": 60})
        wait_status(stack, run.id, "sleeping", timeout=30)
        stack.clock.advance(61)
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    assert done.epoch == 2  # parked once, claimed again
    log = executions(exec_log)
    assert sorted(log) == sorted(f"{run.id}:t{i}" for i in range(12)), log
    # The first claim: the claim, one flush (before the nap's record), the nap's
    # record and the park; the second: the claim and the finish, which carries
    # t6-t11.
    assert ddb_writes == Counter({"UpdateItem": 4, "TransactWriteItems": 1, "PutItem": 1})
    assert [s.name for s in stack.store.steps(run.id)] == [
        *(f"t{i}" for i in range(6)),
        "nap",
        *(f"t{i}" for i in range(6, 12)),
    ]


def test_a_sigkill_between_flushes_runs_exactly_the_unflushed_steps_again(
    stack: Any, exec_log: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    env = worker_env(stack, exec_log)
    env[r.ENV_CHECKPOINT_FLUSH_MS] = "600000"  # no timed flush: only the zero sleep flushes
    spec = {"steps": 8, "mark_after": 3, "pause_at": 6, "pause": 4, "marker": str(marker)}
    run, _ = stack.service.start("tiny", spec)
    # Neither claim may lose its lease (a lost one runs the buffered steps once
    # more): the second holds t6's 4 s, and the first's lease, which the second
    # waits out after the kill, is 10 s, far more than its tiny steps take.
    with WorkerProcess({**env, r.ENV_LEASE_SECONDS: "10"}) as first:
        wait_for(marker.exists, timeout=30)
        first.kill()  # SIGKILL in step t6: t0-t2 written (before "mark"), t3-t5 buffered
    assert [s.name for s in stack.store.steps(run.id)] == ["t0", "t1", "t2", "mark"]
    marker.unlink()
    with WorkerProcess({**env, r.ENV_LEASE_SECONDS: "60"}) as second:
        done = wait_status(stack, run.id, "completed", "failed", timeout=90)
        second.terminate()
    assert done.status == Status.COMPLETED, done.error
    assert done.epoch == 2  # two claims: neither lost its lease
    log = Counter(executions(exec_log))
    assert [log[f"{run.id}:t{i}"] for i in range(8)] == [1, 1, 1, 2, 2, 2, 1, 1], log
    assert log[f"{run.id}:t6:start"] == 2
    assert [s.name for s in stack.store.steps(run.id)] == [
        "t0", "t1", "t2", "mark", *(f"t{i}" for i in range(3, 8))
    ]  # fmt: skip


def test_a_worker_that_stops_writes_its_buffered_results_before_it_releases(
    stack: Any, exec_log: Path, tmp_path: Path
) -> None:
    """SIGTERM while t3 runs: the drain's grace ends, the worker flushes t0-t2
    and releases the run; the next worker replays them and runs only t3 again."""
    marker = tmp_path / "started"
    env = worker_env(stack, exec_log)
    env[r.ENV_CHECKPOINT_FLUSH_MS] = "600000"  # no timed flush
    spec = {"steps": 5, "pause_at": 3, "pause": 3, "marker": str(marker)}
    with WorkerProcess(env, grace=0.5) as first:
        run, _ = stack.service.start("tiny", spec)
        wait_for(marker.exists, timeout=30)
        assert first.terminate() == 0
    released = stack.store.get(run.id)
    assert released.owner is None and released.status == Status.RUNNING
    assert [s.name for s in stack.store.steps(run.id)] == ["t0", "t1", "t2"]
    with WorkerProcess(env) as second:
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
        second.terminate()
    assert done.status == Status.COMPLETED, done.error
    log = Counter(executions(exec_log))
    assert [log[f"{run.id}:t{i}"] for i in (0, 1, 2, 4)] == [1, 1, 1, 1], log
    assert log[f"{run.id}:t3:start"] == 2


def test_a_batched_map_records_its_items_in_one_item(stack: Any, ddb_writes: Counter[str]) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        each, _ = stack.service.start("tiny_map", {"items": 30})
        wait_status(stack, each.id, "completed", "failed")
        unbatched = Counter(ddb_writes)
        ddb_writes.clear()
        batched, _ = stack.service.start("tiny_map", {"items": 30, "checkpoint": "batched"})
        wait_status(stack, batched.id, "completed", "failed")
    a, b = stack.store.get(each.id), stack.store.get(batched.id)
    assert a.status == b.status == Status.COMPLETED, (a.error, b.error)
    assert a.output == b.output == str([i * 2 for i in range(30)]).replace(" ", "")
    # Unbatched: 30 item puts and the decision; batched: one flush and the decision.
    assert unbatched["PutItem"] == 31 and unbatched["TransactWriteItems"] == 0, unbatched
    assert ddb_writes["PutItem"] == 1 and ddb_writes["TransactWriteItems"] == 1, ddb_writes
    for run_id in (each.id, batched.id):
        decision, *items = stack.store.steps(run_id)  # the map's id sorts before its items'
        assert (decision.op_id, decision.name) == ("0", "double")
        assert [s.op_id for s in items] == [f"0.{i}.0" for i in range(30)]
        assert [s.result for s in items] == [str(i * 2) for i in range(30)]


def test_a_redriven_run_replays_the_results_its_end_carried(
    stack: Any, exec_log: Path, tmp_path: Path, ddb_writes: Counter[str]
) -> None:
    """The failed run's terminal write carried t0-t4 (no flush before it); the
    redrive's claim reads them from the run item and runs none of them again.
    Its own end does not overwrite them: it flushes t5-t9 first."""
    gate = tmp_path / "gate"
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("tiny", {"steps": 10, "gate_at": 5, "gate": str(gate)})
        failed = wait_status(stack, run.id, "completed", "failed")
        assert failed.status == Status.FAILED and failed.error is not None
        assert "the gate is closed" in failed.error.message
        assert ddb_writes["TransactWriteItems"] == 0, ddb_writes  # t0-t4 went with the end
        first_batch = stack.store.get(run.id).last_batch
        assert first_batch is not None
        gate.touch()
        redrive(stack.service, run.id)
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    assert done.output == str(sum(range(10)))
    log = Counter(executions(exec_log))
    assert [log[f"{run.id}:t{i}"] for i in range(10)] == [1] * 10, log
    assert ddb_writes["TransactWriteItems"] == 1, ddb_writes  # t5-t9, before the end
    assert done.last_batch == first_batch
    assert [s.name for s in stack.store.steps(run.id)] == [f"t{i}" for i in range(10)]


def test_the_replay_check_reads_the_results_a_run_end_carried(stack: Any) -> None:
    import asyncio

    from worker import definition_of, replay_check

    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("tiny", {"steps": 6})
        done = wait_status(stack, run.id, "completed", "failed")
    assert done.status == Status.COMPLETED and done.last_batch is not None
    definitions = {d.name: d for d in map(definition_of, ALL)}
    report = asyncio.run(replay_check(definitions, [done], stack.ddb, stack.settings.table))
    # Without the run item's results the replay would stop at t0 (unrecorded).
    assert [(v.ok, v.outcome) for v in report.verdicts] == [(True, "returned")], report
