"""Conformance, parallel suite (requirements 8-x): `ctx.parallel` returns a
BatchResult decided by the completion rule; the decision is recorded at the
batch's id (kind "parallel") and each branch's operations live under "<id>.<i>"."""

from __future__ import annotations

import json

from tests.conformance import workflows_parallel

WORKFLOWS = workflows_parallel.ALL

SCENARIOS = {
    key: (f"parallel-{key}", None)
    for key in [
        "8-1", "8-2", "8-3", "8-4", "8-5", "8-6", "8-7", "8-8", "8-9", "8-10", "8-11", "8-13", "8-14",
        "8-12", "8-12-nested", "8-15", "8-16", "8-17", "8-18", "8-19", "8-20", "8-21",
        "8-22",
    ]
}  # fmt: skip


def _decision(o, op_id: str = "0") -> dict:
    return json.loads(o.ops[op_id].result)


def _statuses(o, op_id: str = "0") -> list[tuple[int, str]]:
    return [(item["i"], item["s"]) for item in _decision(o, op_id)["items"]]


def _branches_run(o, n: int) -> list[int]:
    return [o.ran(f"b{i}") for i in range(n)]


def test_8_1_parallel_two_branches_each_a_step(outcomes) -> None:
    o = outcomes["8-1"]
    assert (o.status, o.output) == ("completed", ["task-1", "task-2"])
    assert o.shape() == [
        ("0", "parallel", "parallel"),
        ("0.0.0", "step", "task-1"),
        ("0.1.0", "step", "task-2"),
    ]
    assert o.ran("task-1") == o.ran("task-2") == 1


def test_8_4_parallel_branches_return_different_types(outcomes) -> None:
    o = outcomes["8-4"]
    assert (o.status, o.output) == ("completed", ["hello", 42, {"k": "v"}])


def test_8_5_parallel_with_no_branches(outcomes) -> None:
    o = outcomes["8-5"]
    assert o.status == "completed"
    assert o.output == {
        "results": [],
        "completionReason": "all_completed",
        "status": "succeeded",
        "successCount": 0,
        "failureCount": 0,
        "totalCount": 0,
    }
    assert o.shape() == [("0", "parallel", "empty")]  # the batch is recorded, no branch


def test_8_6_parallel_fail_fast_stops_at_the_first_failure(outcomes) -> None:
    o = outcomes["8-6"]
    assert o.output == {
        "completionReason": "failure_tolerance_exceeded",
        "status": "failed",
        "successCount": 1,
        "failureCount": 1,
        "totalCount": 2,
    }
    assert o.status == "completed"
    assert _branches_run(o, 3) == [1, 1, 0]  # branch 2 never started
    assert _statuses(o) == [(0, "succeeded"), (1, "failed")]


def test_8_7_parallel_throw_if_error_fails_the_run(outcomes) -> None:
    o = outcomes["8-7"]
    assert o.status == "failed" and o.error_type == "ChildContextError"
    assert "b0 failed" in o.run.error.message
    assert _branches_run(o, 2) == [1, 0]


def test_8_8_parallel_min_successful_stops_early(outcomes) -> None:
    o = outcomes["8-8"]
    assert o.status == "completed"
    assert o.output["completionReason"] == "min_successful_reached"
    assert (o.output["successCount"], o.output["totalCount"]) == (2, 2)
    assert _branches_run(o, 4) == [1, 1, 0, 0]


def test_8_9_parallel_tolerated_failure_count_completes_all(outcomes) -> None:
    o = outcomes["8-9"]
    assert o.output == {
        "completionReason": "all_completed",
        "status": "failed",
        "successCount": 2,
        "failureCount": 1,
        "totalCount": 3,
    }
    assert _branches_run(o, 3) == [1, 1, 1]


def test_8_10_parallel_stops_when_failures_exceed_the_count(outcomes) -> None:
    o = outcomes["8-10"]
    assert o.output["completionReason"] == "failure_tolerance_exceeded"
    assert (o.output["successCount"], o.output["failureCount"], o.output["totalCount"]) == (
        0,
        2,
        2,
    )
    assert _branches_run(o, 3) == [1, 1, 0]


def test_8_11_parallel_results_in_branch_order_whatever_the_completion_order(outcomes) -> None:
    o = outcomes["8-11"]
    assert (o.status, o.output) == ("completed", ["r0", "r1", "r2"])
    # r0 (the slowest) finished after r1: completion order differed from index order.
    assert o.ops["0.0.0"].recorded_at > o.ops["0.1.0"].recorded_at


def test_8_13_parallel_stops_when_failures_exceed_the_percentage(outcomes) -> None:
    o = outcomes["8-13"]
    assert o.output["completionReason"] == "failure_tolerance_exceeded"
    assert (o.output["successCount"], o.output["failureCount"], o.output["totalCount"]) == (
        0,
        2,
        2,
    )
    assert _branches_run(o, 4) == [1, 1, 0, 0]


def test_8_14_parallel_branch_waits_and_the_finished_branch_is_not_run_again(outcomes) -> None:
    o = outcomes["8-14"]
    assert (o.status, o.output) == ("completed", ["b0", "b1"])
    assert o.parks == 1 and o.ran("b0") == 1
    _, ops = o.rounds[0]
    assert set(ops) == {"0.0.0", "0.1.0"}  # parked mid-batch: no decision recorded yet
    assert o.shape() == [
        ("0", "parallel", "replay"),
        ("0.0.0", "step", "b0"),
        ("0.1.0", "sleep", "wait"),
    ]


def test_8_15_parallel_custom_item_serdes_round_trips(outcomes) -> None:
    """Equivalent: each branch function's return annotation (`Annotated[str,
    PlainSerializer(wrap), BeforeValidator(unwrap)]`) is its item serdes."""
    o = outcomes["8-15"]
    assert (o.status, o.output) == ("completed", ["x", "y"])
    stored = [json.loads(item["r"]) for item in _decision(o)["items"]]
    assert stored == [{"wrapped": "x"}, {"wrapped": "y"}]
    # The replay after the wait read the results back from the record.
    assert o.parks == 1 and o.ran("x") == o.ran("y") == 1


def test_8_16_parallel_all_branches_fail_within_tolerance(outcomes) -> None:
    o = outcomes["8-16"]
    assert o.output == {
        "completionReason": "all_completed",
        "status": "failed",
        "successCount": 0,
        "failureCount": 3,
        "totalCount": 3,
    }


def test_8_17_parallel_min_successful_never_reached(outcomes) -> None:
    o = outcomes["8-17"]
    assert o.output == {
        "completionReason": "all_completed",
        "status": "failed",
        "successCount": 2,
        "failureCount": 1,
        "totalCount": 3,
    }
    assert _branches_run(o, 3) == [1, 1, 1]


def test_8_18_parallel_failure_tolerance_exceeded_before_min_successful(outcomes) -> None:
    o = outcomes["8-18"]
    assert o.output["completionReason"] == "failure_tolerance_exceeded"
    assert (o.output["successCount"], o.output["failureCount"], o.output["totalCount"]) == (
        0,
        2,
        2,
    )
    assert _branches_run(o, 4) == [1, 1, 0, 0]


def test_8_19_parallel_max_concurrency_zero_fails_the_run(outcomes) -> None:
    o = outcomes["8-19"]
    assert o.status == "failed" and o.error_type == "ValueError"
    assert "max_concurrency" in o.run.error.message
    assert o.ops == {} and _branches_run(o, 2) == [0, 0]


def test_8_20_parallel_batch_result_accessors(outcomes) -> None:
    o = outcomes["8-20"]
    assert o.output == {
        "hasFailure": True,
        "successCount": 2,
        "failureCount": 1,
        "errorCount": 1,
        "errors": [["RuntimeError", "b1 failed"]],
    }


def test_8_21_parallel_nested_in_a_branch(outcomes) -> None:
    o = outcomes["8-21"]
    assert (o.status, o.output) == ("completed", [["i1", "i2"]])
    assert o.shape() == [
        ("0", "parallel", "outer"),
        ("0.0.0", "parallel", "inner"),
        ("0.0.0.0.0", "step", "i1"),
        ("0.0.0.1.0", "step", "i2"),
    ]


def test_8_22_parallel_failure_percentage_at_the_boundary(outcomes) -> None:
    o = outcomes["8-22"]
    assert o.output == {
        "completionReason": "all_completed",
        "status": "failed",
        "successCount": 3,
        "failureCount": 1,
        "totalCount": 4,
    }
    assert _branches_run(o, 4) == [1, 1, 1, 1]


def test_8_2_parallel_without_a_name(outcomes) -> None:
    """The branches-only form: the batch is recorded under the default name
    "parallel", which a replay checks as it would a given one."""
    o = outcomes["8-2"]
    assert (o.status, o.output) == ("completed", ["alpha", "beta"])
    assert o.shape() == [("0", "parallel", "parallel")]
    assert _statuses(o) == [(0, "succeeded"), (1, "succeeded")]


def test_8_3_parallel_with_named_branches(outcomes) -> None:
    """`(name, branch)` pairs: each BatchItem carries its branch's name, in index
    order, on the first execution and from the record alike."""
    o = outcomes["8-3"]
    assert (o.status, o.output) == ("completed", [["first", "one"], ["second", "two"]])
    assert o.shape() == [("0", "parallel", "named")]
    assert _branches_run(o, 2) == [1, 1]


def test_8_12_parallel_flat_and_nested(outcomes) -> None:
    """FLAT (the default): no record per branch; each branch's step is recorded
    directly under the batch, and the replay after the sleep reads the decision.
    NESTED: each branch's outcome is also recorded at the branch's id, named by
    its function."""
    flat = outcomes["8-12"]
    assert (flat.status, flat.output) == ("completed", ["fa", "fb"])
    assert flat.shape() == [
        ("0", "parallel", "flat"),
        ("0.0.0", "step", "fa"),
        ("0.1.0", "step", "fb"),
        ("1", "sleep", "after"),
    ]
    nested = outcomes["8-12-nested"]
    assert (nested.status, nested.output) == ("completed", ["fa", "fb"])
    name = "stepping.<locals>.branch"
    assert nested.shape() == [
        ("0", "parallel", "nested"),
        ("0.0", "branch", name),
        ("0.0.0", "step", "fa"),
        ("0.1", "branch", name),
        ("0.1.0", "step", "fb"),
        ("1", "sleep", "after"),
    ]
    assert json.loads(nested.ops["0.1"].result) == "fb"
    for o in (flat, nested):
        assert o.ran("fa") == o.ran("fb") == 1 and o.parks == 1
