"""A worker deletes its handled messages in DeleteMessageBatch calls: many runs,
few SQS requests, an empty queue afterwards, and the pending deletes sent when
the worker stops (worker/_deletes.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from orchestrator import testing_faults as faults
from orchestrator.local.worker_thread import BackgroundWorker
from tests.conftest import TEST_SETTINGS
from tests.helpers import queued, wait_for, wait_status
from tests.workflows import ALL


@pytest.fixture
def stack(make_stack: Any) -> Any:
    """A sweeper grace no real delay reaches: the queue holds the worker's
    messages only (under load a 1 s grace let the sweeper send copies)."""
    return make_stack(settings=TEST_SETTINGS.with_(sweep_grace_ms=60_000))


@pytest.fixture
def sqs_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """SQS requests sent on the wire by clients created during the test (the
    worker's), by operation; counted as benchmarks/hooks.py does."""
    sent: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        sent[event_name.split(".")[2]] += 1

    original = botocore.session.Session.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.register("before-send.sqs", count, unique_id="test-sqs-requests")

    monkeypatch.setattr(botocore.session.Session, "__init__", init)
    yield sent


def test_thirty_runs_take_a_few_delete_batches_and_leave_the_queue_empty(
    stack: Any, sqs_requests: Counter[str]
) -> None:
    runs = [stack.service.start("count", {"steps": 1})[0].id for _ in range(30)]
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, max_concurrent_workflows=10):
        for run_id in runs:
            wait_status(stack, run_id, "completed")
        wait_for(lambda: queued(stack) == 0, timeout=20)  # deleted after max_wait
    assert sqs_requests["DeleteMessage"] == 0
    # Ten slots, runs finishing in bursts: a batch carries two deletes or more on
    # average (three on a quiet machine; on a loaded one the ends spread out).
    assert 3 <= sqs_requests["DeleteMessageBatch"] <= len(runs) // 2, sqs_requests


def test_stopping_the_worker_sends_the_deletes_still_waiting(
    stack: Any, sqs_requests: Counter[str]
) -> None:
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock, delete_max_wait=60):
        # Started after the worker: its start-up kick of pending runs (worker/_handoff.py)
        # would otherwise send each run a second message.
        runs = [stack.service.start("count", {"steps": 1})[0].id for _ in range(3)]
        for run_id in runs:
            wait_status(stack, run_id, "completed")
        # Fewer than 10 and long before max_wait: held, the messages still in flight.
        assert queued(stack) == 3
        assert sqs_requests["DeleteMessageBatch"] == 0
    assert queued(stack) == 0  # sent by the stop, before the client closed
    assert sqs_requests["DeleteMessageBatch"] == 1


def test_the_fault_journal_records_a_batch_delete_with_its_receipts(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "journal.jsonl"
    faults.reset()
    monkeypatch.setenv(faults.ENV_FAULTS, json.dumps({"journal": str(journal)}))
    try:
        with BackgroundWorker(ALL, stack.settings, clock=stack.clock, delete_max_wait=60):
            runs = [stack.service.start("count", {"steps": 1})[0].id for _ in range(2)]
            for run_id in runs:
                wait_status(stack, run_id, "completed")
    finally:
        faults.reset()
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    received = {
        m["receipt"] for e in entries if e["op"] == "sqs.ReceiveMessage" for m in e["messages"]
    }
    deletes = [e for e in entries if e["op"].startswith("sqs.Delete")]
    assert [(e["op"], e["failed"]) for e in deletes] == [("sqs.DeleteMessageBatch", [])]
    assert sorted(deletes[0]["receipts"]) == sorted(received) and len(received) == 2
