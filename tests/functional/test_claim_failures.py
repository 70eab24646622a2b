"""No run loops forever: a run whose claims keep ending with the same
non-transient error before it can go on fails after
`Settings.claim_failure_limit` claims, with that error
(worker/_claim_failures.py). A transient error never counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import resources as r
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Run, Status
from orchestrator.payloads import is_pointer, object_key, parse_pointer
from tests.helpers import queued, wait_for, wait_status
from tests.workflows_claims import CLAIMS
from tests.workflows_large import LARGE

LIMIT = 3


def _settings(stack: Any, limit: int = LIMIT) -> Any:
    # A long lease: no claim is lost on a loaded machine, so each claim counted
    # is one that failed (the exact counts below).
    return stack.settings.with_(claim_failure_limit=limit, lease_seconds=30)


def _park_with_a_large_record(stack: Any) -> tuple[Run, str]:
    """A `large.value` run parked in its hour-long sleep, its first step's result
    offloaded to S3; (the parked run, that result's pointer)."""
    run, _ = stack.service.start("large.value", {"size": 300 * 1024, "sleep": 3600})
    parked = wait_status(stack, run.id, "sleeping", "failed", timeout=60)
    assert parked.status == Status.SLEEPING, parked.error
    made = next(s.result for s in stack.store.steps(run.id) if s.name == "make")
    assert is_pointer(made)
    return parked, made


def _wake(stack: Any, run: Run) -> None:
    assert run.wake_at is not None
    stack.clock.advance((run.wake_at - stack.clock.now_ms()) / 1000 + 1)


def _settled(stack: Any, run_id: str) -> Run:
    """The run once no message for it is left (visible or in flight): nothing can
    claim it any more."""
    wait_for(lambda: queued(stack) == 0, timeout=30)
    return stack.store.get(run_id)


def test_a_value_gone_from_s3_fails_the_run_after_the_limit_of_claims(stack: Any) -> None:
    with BackgroundWorker(LARGE, _settings(stack), clock=stack.clock):
        parked, made = _park_with_a_large_record(stack)
        digest, _ = parse_pointer(made)
        stack.s3.delete_object(Bucket=stack.settings.bucket, Key=object_key(digest))
        _wake(stack, parked)
        failed = wait_status(stack, parked.id, "failed", "completed", timeout=60)
        after = _settled(stack, parked.id)
    assert failed.status == Status.FAILED
    assert failed.error is not None and failed.error.type == "ValueUnavailableError"
    assert "is no longer stored (expired)" in failed.error.message
    assert f"this error ended {LIMIT} claims of the run in a row" in failed.error.message
    # Exactly LIMIT claims after the wake, each ended by the missing value; then the
    # attempt count stopped.
    assert failed.epoch == parked.epoch + LIMIT
    assert after.epoch == failed.epoch and after.status == Status.FAILED
    assert after.claim_failure is None and after.due_at is None  # out of the sweeper's index


@pytest.mark.parametrize(
    ("name", "input", "error_type", "message"),
    [
        ("claims.unbuilt_input", {"item": 1}, "PydanticUserError", "is not fully defined"),
        ("claims.base_exception", None, "GiveUp", "gives up before its first durable call"),
    ],
)
def test_a_workflow_that_cannot_load_or_start_fails_after_the_limit_of_claims(
    stack: Any, name: str, input: Any, error_type: str, message: str
) -> None:
    with BackgroundWorker(CLAIMS, _settings(stack), clock=stack.clock):
        run, _ = stack.service.start(name, input)
        failed = wait_status(stack, run.id, "failed", "completed", timeout=60)
        after = _settled(stack, run.id)
    assert failed.error is not None and failed.error.type == error_type
    assert message in failed.error.message
    assert f"this error ended {LIMIT} claims of the run in a row" in failed.error.message
    assert failed.epoch == LIMIT  # every claim from the first one failed
    assert after.epoch == failed.epoch


def test_a_run_whose_value_is_back_before_the_limit_goes_on(stack: Any) -> None:
    """Claims fail while the value is gone; it is put back (restored from a
    backup) before the limit, and the next claim runs the run to its end. The
    count of failed claims goes with the terminal write."""
    limit = 5  # room for a claim or two while the value is put back
    with BackgroundWorker(LARGE, _settings(stack, limit), clock=stack.clock):
        parked, made = _park_with_a_large_record(stack)
        digest, _ = parse_pointer(made)
        key = object_key(digest)
        body = stack.s3.get_object(Bucket=stack.settings.bucket, Key=key)["Body"].read()
        stack.s3.delete_object(Bucket=stack.settings.bucket, Key=key)
        _wake(stack, parked)

        def counted() -> Any:
            cf = stack.store.get(parked.id).claim_failure
            return cf if cf is not None and cf.count >= 2 else None

        failure = wait_for(counted, timeout=60)
        assert failure.type == "ValueUnavailableError" and failure.count < limit
        assert "is no longer stored" in failure.message
        stack.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=body)
        done = wait_status(stack, parked.id, "completed", "failed", timeout=60)
    assert done.status == Status.COMPLETED, done.error
    assert parked.epoch + 3 <= done.epoch <= parked.epoch + limit
    assert done.claim_failure is None


def test_transient_errors_never_fail_the_run(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More claims than the limit fail on an S3 5xx (transient) while reading the
    history: the run waits out each lease and completes once S3 answers."""
    limit, failures = 2, 3  # more claims than the limit end on a transient error
    faults = tmp_path / "faults.jsonl"
    rule = {"kind": "5xx", "op": "s3.GetObject", "times": failures}
    with BackgroundWorker(LARGE, _settings(stack), clock=stack.clock):
        parked, _ = _park_with_a_large_record(stack)
    # A worker whose S3 reads fail (its clients get the faults), with the test tiers'
    # short lease: a claim left by a transient error comes back after it.
    monkeypatch.setenv(r.ENV_FAULTS, json.dumps({"rules": [rule], "log": str(faults)}))
    with BackgroundWorker(
        LARGE, stack.settings.with_(claim_failure_limit=limit), clock=stack.clock
    ):
        _wake(stack, parked)
        done = wait_status(stack, parked.id, "completed", "failed", timeout=120)
    assert done.status == Status.COMPLETED, done.error
    assert len(faults.read_text().splitlines()) == failures  # each one ended a claim
    assert done.epoch >= parked.epoch + failures + 1
    assert done.claim_failure is None
