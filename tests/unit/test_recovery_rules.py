"""The pure rules of redrive and fork (orchestrator/store/recovery.py) and the
generation keys of continue-as-new."""

from __future__ import annotations

from orchestrator.model import (
    RECOVERY,
    ErrorInfo,
    Status,
    StepKind,
    StepRecord,
    generation_scope,
    op_from_sort_key,
    op_sort_key,
)
from orchestrator.store.recovery import fork_prefix, to_remove


def rec(op: str, kind: StepKind = StepKind.STEP, *, error: bool = False, resolved: bool = True):
    return StepRecord(
        op, f"n{op}", kind, 1, 1, error=ErrorInfo("E", "x") if error else None, resolved=resolved
    )


def test_redrive_removes_failures_retry_states_cancel_markers_and_their_ancestors() -> None:
    history = [
        rec("0"),
        rec("1", error=True),  # a failed step
        rec("2", StepKind.MAP),  # its item 1 failed: the batch's decision goes too
        rec("2.0.0"),
        rec("2.1.0", error=True),
        rec("3", resolved=False),  # a retry state: fresh attempts
        rec("4", StepKind.CANCEL),
        rec("5", StepKind.PATCH),
    ]
    assert [r.op_id for r in to_remove(history)] == ["1", "2", "2.1.0", "3", "4"]


def test_fork_keeps_what_comes_before_the_operation_and_not_its_ancestors() -> None:
    ops = ["0", "1", "2", "3", "3.0.0", "3.0.1", "3.1.0", "3.1.1", "3.1.2", "3.2.0", "4", "t0.0"]
    kept = [r.op_id for r in fork_prefix([rec(op) for op in ops], "3.1.2")]
    assert kept == ["0", "1", "2", "3.0.0", "3.0.1", "3.1.0", "3.1.1"]
    assert [r.op_id for r in fork_prefix([rec(op) for op in ops], "2")] == ["0", "1"]


def test_redrive_reopens_only_failed_and_cancelled_runs() -> None:
    assert set(RECOVERY["redrive"]) == {Status.FAILED, Status.CANCELLED}
    assert all(to is Status.PENDING for to in RECOVERY["redrive"].values())


def test_generation_ids_have_their_own_sort_key_prefix() -> None:
    assert generation_scope(0) == ""
    assert op_sort_key("~3.0") == "~00003.000000"
    assert op_from_sort_key(op_sort_key("~12.4.t1.0")) == "~12.4.t1.0"
    # generation 0's keys sort below "~" (the Query's upper bound), later ones above
    assert max(op_sort_key(o) for o in ("99999", "t99.3", "0.t0")) < "~"
