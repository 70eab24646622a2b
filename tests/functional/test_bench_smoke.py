"""The benchmark end to end on a tiny workload: it runs, writes its JSON, and
its accounting adds up to exactly the calls the protocol makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import main

W, S = 3, 2

REQUIRED_KEYS = {
    "steps_total",
    "dynamodb_writes_per_step",
    "dynamodb_reads_per_step",
    "wru_per_step",
    "rru_per_step",
    "sqs_requests_per_workflow",
    "dollars_per_million_steps",
    "anchors_dollars_per_million_steps",
    "wall_ratio_to_floor",
    "growth",
}


@pytest.mark.timeout(150)
def test_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    args = ["-W", str(W), "-S", str(S), "-K", "1", "--no-sweeps", "--repeat", "1"]
    args += ["--fanout-items", "20", "--distributed-items", "12", "--no-batched", "--no-values"]
    assert main([*args, "--probe-workflows", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Engine vs floor" in printed and "Dollars per million steps" in printed

    data = json.loads(out.read_text())
    assert set(data) >= REQUIRED_KEYS
    assert data["steps_total"] == W * S
    assert set(data["anchors_dollars_per_million_steps"]) == {
        "aws_step_functions_standard",
        "temporal_cloud",
        "aws_lambda_durable_functions",
    }
    assert data["anchors_dollars_per_million_steps"]["aws_step_functions_standard"] == 25.0
    assert data["growth"] == []
    assert data["values"] is None  # the large-value phase: tests/functional/test_bench_values.py
    fan = data["fanout_inline"]
    assert fan["items"] == 20 and "Fan-out in one run" in printed
    # The map records each item's step and one batch decision: about one write
    # more than the same steps in sequence (the worker registry may add one).
    extra = (fan["map"]["writes_per_item"] - fan["sequential"]["writes_per_item"]) * 20
    assert 0.5 <= extra <= 2.5, fan
    dist = data["fanout_distributed"]
    assert dist["items"] == 12 and "Distributed map" in printed
    # Each child: its start, claim, step and end (4 writes), plus per phase the
    # parent's five, the worker registry's and the sweeper walk's marks.
    assert 4 <= dist["writes_per_item"] <= 4 + 20 / 12, dist
    assert dist["wall_ratio_to_floor"] > 0
    assert data["wall_ratio_to_floor"] > 0

    ours = data["ours"]
    calls = ours["calls_by_process"]
    purposes = dict(ours["dynamodb_by_purpose"])
    # A worker keeps an item in the worker registry; those writes are counted too
    # but are per worker, not per workflow.
    registry = purposes.pop("worker registry", 0)
    # Flow control: a worker reads each task queue's limits at most every 5 s
    # (worker/_flow.py); none is limited here, so no slot is written.
    config_reads = purposes.pop("get QUEUES", 0)
    assert config_reads <= 20
    # One history load per claim, or none if the engine skips it on a first claim.
    history = purposes.pop("load history", 0)
    assert history in (0, W)
    # The sweeper's walk of by_created (run once at the end, as if the grace had
    # passed): its marks, one index Query per list shard, one BatchGetItem per
    # shard that holds runs, and a mark write per such shard. Nothing promoted.
    startup_registry = purposes.pop("query WORKERS", 0)
    assert startup_registry == 1
    shards = purposes.pop("batch get")
    assert 1 <= shards <= min(W, 4)
    assert purposes.pop("query SWEEPER") == 1
    # A starting worker reads the registry once and, for the names no other live
    # worker serves (all of them: it is alone), 2 s later looks for runs created
    # before it started that are still pending, with one by_created Query per list
    # shard (worker/_handoff.py; none if the worker stopped sooner).
    kicked = purposes.pop("query index by_created") - 4
    assert kicked in (0, 4)
    assert purposes.pop("sweeper mark") == shards
    assert calls["sweeper"]["dynamodb.BatchGetItem"] == shards
    # The API process: exactly one start write and one send per workflow.
    assert calls["api"]["dynamodb.PutItem"] == W
    assert calls["api"]["sqs.SendMessage"] == W
    # The worker: S step records, one claim and one finish, one history load, and its
    # message deletes batched (worker/_deletes.py): W deletes in 1 to W batch calls.
    worker = calls["worker-0"]
    assert worker["dynamodb.PutItem"] == W * S + registry
    assert worker["dynamodb.UpdateItem"] == 2 * W
    assert worker.get("dynamodb.Query", 0) == history + startup_registry + kicked
    assert "sqs.DeleteMessage" not in worker
    assert 1 <= worker["sqs.DeleteMessageBatch"] <= W
    assert purposes == {
        "start": W,
        "claim": W,
        "record step": W * S,
        "finish (completed)": W,
    }
    # The client-side hooks and the server-side meter saw the same DynamoDB requests.
    assert ours["accounting_consistent"] is True
    assert ours["meter_errors"] == []
    # Capacity: every item is under 1 KB. Table: start + claim + S steps + finish.
    # Index (the layout of orchestrator/resources.py): the start enters by_created;
    # a run that finishes within the grace never enters by_due. The sweeper's
    # mark items are outside both indexes.
    assert ours["wru_table"] == W * (S + 3) + registry + shards
    assert ours["index_writes"] == {"by_created": W}
    assert ours["wru_index"] == W
    # Reads: a history Query of a fresh run is the strongly consistent 1-unit
    # minimum; the sweeper's mark Query 1 unit (strong), its index Queries 0.5
    # each, and each run read in a batch 0.5 (eventually consistent, under 4 KB).
    # The worker's start-up look: 4 index Queries (0.5 each) and the registry Query (1).
    expected_rru = history + 1 + 4 * 0.5 + W * 0.5 + config_reads * 0.5
    expected_rru += startup_registry * 1 + kicked * 0.5
    assert ours["rru_per_step"] == pytest.approx(expected_rru / (W * S))
    assert data["dynamodb_reads_after_claim_per_step"] == 0

    floor = data["floor"]
    assert floor["dynamodb_writes"] == W * (S + 3)
    assert floor["dynamodb_reads"] == 0
    assert floor["wru_index"] == 0
    # The floor batches its deletes with the worker's batcher, as the engine does.
    floor_worker = floor["calls_by_process"]["floor-worker-0"]
    assert "sqs.DeleteMessage" not in floor_worker
    assert 1 <= floor_worker["sqs.DeleteMessageBatch"] <= W


def test_capacity_rules() -> None:
    """The write-unit rules the meter applies, on the engine's index layout."""
    from benchmarks.capacity import IndexDef, TableDef, item_size, number_size, write_cost

    table = TableDef(
        "t",
        "pk",
        "sk",
        (
            IndexDef("by_created", "list_pk", "list_sk", "INCLUDE", ("name",)),
            IndexDef("by_due", "due_pk", "due_at", "KEYS_ONLY"),
        ),
    )
    key = {"pk": {"S": "WF#1"}, "sk": {"S": "RUN"}}
    listed = {"list_pk": {"S": "RUNS#0"}, "list_sk": {"S": "1#1"}, "name": {"S": "n"}}
    due = {"due_pk": {"S": "DUE#0"}, "due_at": {"N": "100"}}
    new = {**key, **listed, **due, "status": {"S": "pending"}}
    # Start: 1 table unit, enters both indexes.
    start = write_cost(table, None, new, succeeded=True)
    assert (start.table_units, start.index_writes) == (1, {"by_created": 1, "by_due": 1})
    # A status change touches no index (status is not projected anywhere).
    claimed = {**new, "status": {"S": "running"}}
    assert write_cost(table, new, claimed, succeeded=True).index_writes == {}
    # Moving due_at changes an index key: delete + put.
    moved = {**claimed, "due_at": {"N": "200"}}
    assert write_cost(table, claimed, moved, succeeded=True).index_writes == {"by_due": 2}
    # Leaving the sparse index: one write.
    done = {k: v for k, v in moved.items() if k not in due}
    assert write_cost(table, moved, done, succeeded=True).index_writes == {"by_due": 1}
    # Changing a projected attribute rewrites the entry once.
    renamed = {**done, "name": {"S": "m"}}
    assert write_cost(table, done, renamed, succeeded=True).index_writes == {"by_created": 1}
    # A failed condition costs the existing item's size, no index; transactions twice.
    big = {**key, "blob": {"S": "x" * 3000}}
    assert write_cost(table, big, big, succeeded=False).table_units == 3
    assert write_cost(table, None, None, succeeded=False, transactional=True).table_units == 2
    # Sizes: names + values; numbers by significant digits.
    assert number_size("1764014000000") == 1 + 4  # "1764014" -> 7 digits -> 4 bytes + 1
    assert item_size({"ab": {"S": "xyz"}, "m": {"M": {"k": {"BOOL": True}}}}) == 5 + (1 + 3 + 3)
