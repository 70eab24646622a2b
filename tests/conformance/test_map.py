"""Conformance, map suite (requirements 9-x): `ctx.map` runs `fn(ctx, item, index)`
per item as `parallel` runs branches; the decision is recorded at the map's id
(kind "map") and item i's operations live under "<id>.<i>"."""

from __future__ import annotations

import json

from tests.conformance import workflows_map

WORKFLOWS = workflows_map.ALL

SCENARIOS = {
    "9-1": ("map-9-1", ["World", "Kiro"]),
    "9-3": ("map-9-3", [10, 20, 30]),
    "9-2": ("map-9-2", [1, 2]),
    "9-4": ("map-9-4", []),
    "9-12": ("map-9-12", None),
    "9-12-nested": ("map-9-12-nested", None),
    "9-13": ("map-9-13", [1, 2]),
    "9-19": ("map-9-19", None),
    "9-20": ("map-9-20", None),
    **{
        key: (f"map-{key}", None)
        for key in ["9-5", "9-6", "9-7", "9-8", "9-9", "9-10", "9-11", "9-14", "9-15", "9-16"]
    },
    "9-16-early": ("map-9-16-early", None),
    "9-17": ("map-9-17", None),
    "9-18": ("map-9-18", None),
}


def _decision(o, op_id: str = "0") -> dict:
    return json.loads(o.ops[op_id].result)


def _items_run(o, n: int) -> list[int]:
    return [o.ran(f"item{i}") for i in range(n)]


def _counts(o) -> tuple[int, int, int]:
    out = o.output
    return out["successCount"], out["failureCount"], out["totalCount"]


def test_9_1_map_each_item_runs_a_step(outcomes) -> None:
    o = outcomes["9-1"]
    assert (o.status, o.output) == ("completed", ["Hello, World!", "Hello, Kiro!"])
    assert o.shape() == [
        ("0", "map", "map"),
        ("0.0.0", "step", "greet-0"),
        ("0.1.0", "step", "greet-1"),
    ]
    assert o.ran("greet") == 2


def test_9_3_map_function_gets_item_and_index(outcomes) -> None:
    o = outcomes["9-3"]
    assert (o.status, o.output) == ("completed", [10, 21, 32])


def test_9_4_map_with_no_items(outcomes) -> None:
    o = outcomes["9-4"]
    assert o.status == "completed"
    assert o.output == {
        "results": [],
        "completionReason": "all_completed",
        "status": "succeeded",
        "successCount": 0,
        "failureCount": 0,
        "totalCount": 0,
    }
    assert o.shape() == [("0", "map", "empty")]  # the map is recorded, no item


def test_9_5_map_fail_fast_stops_at_the_first_failure(outcomes) -> None:
    o = outcomes["9-5"]
    assert o.status == "completed"
    assert o.output["completionReason"] == "failure_tolerance_exceeded"
    assert o.output["status"] == "failed" and _counts(o) == (1, 1, 2)
    assert _items_run(o, 3) == [1, 1, 0]


def test_9_6_map_throw_if_error_fails_the_run(outcomes) -> None:
    o = outcomes["9-6"]
    assert o.status == "failed" and o.error_type == "ChildContextError"
    assert "item 0 failed" in o.run.error.message
    assert _items_run(o, 2) == [1, 0]


def test_9_7_map_min_successful_stops_early(outcomes) -> None:
    o = outcomes["9-7"]
    assert o.output["completionReason"] == "min_successful_reached"
    assert (o.output["successCount"], o.output["totalCount"]) == (2, 2)
    assert _items_run(o, 4) == [1, 1, 0, 0]


def test_9_8_map_tolerated_failure_count_completes_all(outcomes) -> None:
    o = outcomes["9-8"]
    assert o.output["completionReason"] == "all_completed"
    assert o.output["status"] == "failed" and _counts(o) == (2, 1, 3)
    assert _items_run(o, 3) == [1, 1, 1]


def test_9_9_map_stops_when_failures_exceed_the_count(outcomes) -> None:
    o = outcomes["9-9"]
    assert o.output["completionReason"] == "failure_tolerance_exceeded"
    assert _counts(o) == (0, 2, 2)
    assert _items_run(o, 3) == [1, 1, 0]


def test_9_10_map_stops_when_failures_exceed_the_percentage(outcomes) -> None:
    o = outcomes["9-10"]
    assert o.output["completionReason"] == "failure_tolerance_exceeded"
    assert _counts(o) == (0, 2, 2)
    assert _items_run(o, 4) == [1, 1, 0, 0]


def test_9_11_map_results_in_item_order_whatever_the_completion_order(outcomes) -> None:
    o = outcomes["9-11"]
    assert (o.status, o.output) == ("completed", ["r0", "r1", "r2"])
    assert o.ops["0.0.0"].recorded_at > o.ops["0.1.0"].recorded_at


def test_9_14_map_custom_item_serdes_round_trips(outcomes) -> None:
    """Equivalent: the map function's return annotation (`Annotated[str,
    PlainSerializer(lambda v: f"wrapped:{v}"), BeforeValidator(unwrap)]`)."""
    o = outcomes["9-14"]
    assert (o.status, o.output) == ("completed", ["X", "Y"])
    stored = [json.loads(item["r"]) for item in _decision(o)["items"]]
    assert stored == ["wrapped:X", "wrapped:Y"]


def test_9_15_map_iteration_waits_and_the_finished_one_is_not_run_again(outcomes) -> None:
    o = outcomes["9-15"]
    assert (o.status, o.output) == ("completed", ["r0", "r1"])
    assert o.parks == 1
    _, ops = o.rounds[0]
    assert set(ops) == {"0.0.0", "0.1.0"}  # item 0's step and item 1's wait
    assert o.shape() == [
        ("0", "map", "suspend"),
        ("0.0.0", "step", "r0"),
        ("0.1.0", "sleep", "wait"),
        ("0.1.1", "step", "r1"),
    ]
    assert o.ran("r0") == o.ran("r1") == 1


def test_9_16_map_large_results_replay_children(outcomes) -> None:
    o = outcomes["9-16"]
    assert (o.status, o.output) == ("completed", {"successCount": 4, "totalCount": 4})
    rec = o.ops["0"]
    assert rec.replay_children  # only the decision is kept
    assert _decision(o) == {
        "reason": "all_completed",
        "items": [{"i": i, "s": "succeeded"} for i in range(4)],
    }
    # The replay after the wait ran the items again to rebuild their results
    # (the workflow checks their sizes).
    assert _items_run(o, 4) == [2, 2, 2, 2]


def test_large_results_replay_does_not_run_a_cancelled_item_again(outcomes) -> None:
    """Beyond 9-16: the map ended early, so item 1 was cancelled mid-wait ("started");
    the replay that rebuilds the large results runs the decided items only."""
    o = outcomes["9-16-early"]
    assert (o.status, o.output) == (
        "completed",
        {"reason": "min_successful_reached", "started": [1]},
    )
    assert o.ops["0"].replay_children
    assert o.ran("item0") == 2  # run again on replay to rebuild its result
    assert o.ran("late") == 0 and "0.1.1" not in o.ops  # the cancelled item never went on


def test_9_17_map_then_wait_replays_the_recorded_map(outcomes) -> None:
    o = outcomes["9-17"]
    assert (o.status, o.output) == ("completed", ["A", "B"])
    assert o.parks == 1 and _items_run(o, 2) == [1, 1]
    assert o.shape() == [("0", "map", "then-wait"), ("1", "sleep", "wait")]


def test_9_18_map_with_a_failure_then_wait_replays_the_recorded_map(outcomes) -> None:
    o = outcomes["9-18"]
    assert o.status == "completed"
    assert o.output == {
        "completionReason": "all_completed",
        "status": "failed",
        "successCount": 1,
        "failureCount": 1,
        "totalCount": 2,
    }
    assert o.parks == 1 and _items_run(o, 2) == [1, 1]


def test_9_2_map_without_a_name(outcomes) -> None:
    """The items-only form: the map is recorded under its function's qualified
    name, which a replay checks as it would a given name."""
    o = outcomes["9-2"]
    assert (o.status, o.output) == ("completed", [2, 4])
    assert o.shape() == [("0", "map", "double")]
    assert _items_run(o, 2) == [1, 1]


def test_9_12_map_flat_and_nested(outcomes) -> None:
    """FLAT (the default): no record per item; each item's step is recorded
    directly under the map. NESTED: each item's outcome is also recorded at the
    item's id, `item-<i>` by default."""
    flat = outcomes["9-12"]
    assert (flat.status, flat.output) == ("completed", ["fa", "fb"])
    assert flat.shape() == [
        ("0", "map", "flat"),
        ("0.0.0", "step", "fa"),
        ("0.1.0", "step", "fb"),
        ("1", "sleep", "after"),
    ]
    nested = outcomes["9-12-nested"]
    assert (nested.status, nested.output) == ("completed", ["fa", "fb"])
    assert nested.shape() == [
        ("0", "map", "nested"),
        ("0.0", "branch", "item-0"),
        ("0.0.0", "step", "fa"),
        ("0.1", "branch", "item-1"),
        ("0.1.0", "step", "fb"),
        ("1", "sleep", "after"),
    ]
    assert json.loads(nested.ops["0.0"].result) == "fa"
    for o in (flat, nested):
        assert o.ran("fa") == o.ran("fb") == 1 and o.parks == 1


def test_9_13_map_custom_item_namer(outcomes) -> None:
    """`item_namer(item, index)` names each item: its record (nested) and its
    BatchItem; the results keep item order."""
    o = outcomes["9-13"]
    assert (o.status, o.output) == ("completed", [["item-1", 10], ["item-2", 20]])
    assert o.shape() == [
        ("0", "map", "named-items"),
        ("0.0", "branch", "item-1"),
        ("0.1", "branch", "item-2"),
    ]
    assert _items_run(o, 2) == [1, 1]


def test_9_19_map_serializer_writes_the_whole_result(outcomes) -> None:
    """The serializer's text for the whole result is what the record keeps (with
    each index's status, which the engine needs to replay)."""
    o = outcomes["9-19"]
    assert (o.status, o.output) == ("completed", ["X", "Y"])
    decision = _decision(o)
    assert decision["serialized"] == "OPSERDE:X,Y"
    assert [(d["i"], d["s"]) for d in decision["items"]] == [(0, "succeeded"), (1, "succeeded")]
    assert all("r" not in d for d in decision["items"])  # no result besides the text


def test_9_20_map_serializer_reads_the_result_back_on_replay(outcomes) -> None:
    """After the sleep, the replay rebuilds the map's result from the record
    through the serializer's `loads`, without running an item again."""
    o = outcomes["9-20"]
    assert (o.status, o.output) == ("completed", ["X", "Y"])
    assert _decision(o)["serialized"] == "OPSERDE:X,Y"
    assert o.parks == 1 and _items_run(o, 2) == [1, 1]
