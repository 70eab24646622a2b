"""A distributed map over the lines of a JSON Lines object in S3, in batches
(worker/operations/s3_map.py): 100,000 items in batches of 10,000 (the
million-item figure is `python -m benchmarks.s3_map`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.errors import NotFoundError
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status, StepKind, child_run_id
from orchestrator.payloads import is_pointer
from tests.helpers import wait_for, wait_status
from tests.workflows_s3map import S3MAP
from worker.operations.s3_map import MAX_BATCHES


def _upload(stack: Any, key: str, lines: list[str]) -> None:
    body = "\n".join(lines) + "\n"
    stack.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=body.encode())


def _exists(stack: Any, run_id: str) -> bool:
    try:
        stack.store.get(run_id)
    except NotFoundError:
        return False
    return True


def _items(n: int) -> list[str]:
    return [json.dumps({"n": i}) for i in range(n)]


def test_a_hundred_thousand_items_in_batches_of_ten_thousand(stack: Any) -> None:
    n, size = 100_000, 10_000
    lines = _items(n)
    lines.insert(500, "")  # blank lines are not items
    _upload(stack, "in/users.jsonl", lines)
    with BackgroundWorker(S3MAP, stack.settings, clock=stack.clock, max_concurrent_workflows=6):
        run, _ = stack.service.start(
            "s3map.parent",
            {"key": "in/users.jsonl", "batch_size": size, "max_concurrency": 4, "sleep": 1},
        )
        done = wait_status(stack, run.id, "completed", "failed", timeout=240)
    assert done.status == Status.COMPLETED, done.error
    out = json.loads(done.output)
    assert out["batches"] == list(range(10)) and out["succeeded"] == 10
    assert out["items"] == out["count"] == n and out["misplaced"] == 0
    assert out["sum"] == n * (n - 1) // 2
    # The results object: one line per batch, in order.
    body = stack.s3.get_object(Bucket=stack.settings.bucket, Key=out["key"])["Body"].read()
    results = [json.loads(line) for line in body.decode().splitlines()]
    assert [(r["batch"], r["first_index"], r["count"], r["status"]) for r in results] == [
        (k, k * size, size, "succeeded") for k in range(10)
    ]
    # The parent's history holds the plan and the decision, never the items or the
    # results: both records are small, and each child's input went to S3.
    maps = [s for s in stack.store.steps(run.id) if s.kind == StepKind.MAP]
    assert len(maps) == 1 and maps[0].resolved
    record = json.loads(maps[0].result)
    assert record["items"] == n and record["results"]["key"] == out["key"]
    assert len(maps[0].result) < 2000
    children = [stack.store.get(child_run_id(run.id, f"0.{k}")) for k in range(10)]
    assert all(c.status == Status.COMPLETED for c in children)
    assert all(is_pointer(c.input) for c in children)  # 10,000 items each: in S3


def test_a_line_that_is_not_json_refuses_the_map_before_any_child(stack: Any) -> None:
    lines = _items(30)
    lines[17] = "{not json"
    _upload(stack, "in/bad.jsonl", lines)
    with BackgroundWorker(S3MAP, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("s3map.refused", {"key": "in/bad.jsonl", "batch_size": 5})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    assert done.status == Status.COMPLETED, done.error
    assert "line 18 of" in json.loads(done.output) and "is not JSON" in json.loads(done.output)
    assert not _exists(stack, child_run_id(run.id, "0.0"))
    assert not [s for s in stack.store.steps(run.id) if s.kind == StepKind.MAP]


def test_more_batches_than_the_limit_are_refused_naming_it(stack: Any) -> None:
    _upload(stack, "in/many.jsonl", _items(MAX_BATCHES + 1))
    with BackgroundWorker(S3MAP, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("s3map.refused", {"key": "in/many.jsonl", "batch_size": 1})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    message = json.loads(done.output)
    assert f"more than {MAX_BATCHES:,} children" in message and "batch_size" in message
    assert not _exists(stack, child_run_id(run.id, "0.0"))


def test_a_list_map_in_batches_gives_each_child_its_slice(stack: Any) -> None:
    with BackgroundWorker(S3MAP, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("s3map.list", {"items": 25, "batch_size": 10})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    assert done.status == Status.COMPLETED, done.error
    out = json.loads(done.output)
    assert [(i, r["count"], r["sum"], r["misplaced"]) for i, r in out] == [
        (0, 10, sum(range(10)), 0),
        (1, 10, sum(range(10, 20)), 0),
        (2, 5, sum(range(20, 25)), 0),
    ]
    child = stack.store.get(child_run_id(run.id, "0.2"))
    assert json.loads(child.input) == {
        "items": [{"n": i} for i in range(20, 25)],
        "batch": 2,
        "first_index": 20,
    }
    assert not is_pointer(child.input)


def test_an_items_object_replaced_while_the_map_runs_fails_the_map(stack: Any) -> None:
    """Each batch is read with the ETag the plan recorded: a batch read after the
    object changed is refused, never taken from the new version."""
    _upload(stack, "in/moving.jsonl", _items(4))
    with BackgroundWorker(S3MAP, stack.settings, clock=stack.clock, max_concurrent_workflows=4):
        run, _ = stack.service.start(
            "s3map.refused",
            {
                "key": "in/moving.jsonl",
                "batch_size": 2,
                "workflow": "s3map.gated",
                "max_concurrency": 1,
            },
        )
        first = child_run_id(run.id, "0.0")
        wait_for(
            lambda: _exists(stack, first) and stack.store.get(first).status == Status.WAITING,
            timeout=60,
        )
        _upload(stack, "in/moving.jsonl", _items(6))  # a new version, another ETag
        stack.service.signal(first, "go", None)
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    message = json.loads(done.output)
    assert "changed since the map read it" in message, message
    assert not _exists(stack, child_run_id(run.id, "0.1"))


def test_results_larger_than_a_part_are_uploaded_in_parts(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of 512 bytes (S3's 5 MiB minimum lowered on the moto server, in this
    process): 100 batches of one item give a results object of many parts, read
    back whole and in order."""
    import moto.s3.models

    from worker.operations import s3_map

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256)
    monkeypatch.setattr(s3_map, "PART_BYTES", 512)
    _upload(stack, "in/small.jsonl", _items(100))
    with BackgroundWorker(S3MAP, stack.settings, clock=stack.clock, max_concurrent_workflows=8):
        run, _ = stack.service.start("s3map.parent", {"key": "in/small.jsonl", "batch_size": 1})
        done = wait_status(stack, run.id, "completed", "failed", timeout=120)
    assert done.status == Status.COMPLETED, done.error
    out = json.loads(done.output)
    assert out["batches"] == list(range(100)) and out["sum"] == sum(range(100))
    head = stack.s3.head_object(Bucket=stack.settings.bucket, Key=out["key"])
    # A multipart object's ETag ends with its number of parts: each part is a
    # little over 1 KB (written once the buffer reaches it).
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
    assert head["ContentLength"] // 600 <= parts <= head["ContentLength"] // 512
