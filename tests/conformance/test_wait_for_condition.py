"""Conformance, wait_for_condition suite (requirements 6-x): `ctx.wait_for_condition`
runs `check(state)` as the step `<name>-<attempt>`, asks the strategy for the
next delay and waits durably (the sleep `<name>-wait-<attempt>`), all under the
operation's id; the final state (or the error) is recorded at that id (kind
"condition").

Equivalent shape: Lambda checkpoints one step operation per attempt with the
state and the next delay; here each attempt is its own step record and each
delay its own sleep record under the operation, so the states threaded from
one check to the next are the step results.
"""

from __future__ import annotations

import json

from tests.conformance import workflows_condition

WORKFLOWS = workflows_condition.ALL

SCENARIOS = {
    "6-1": ("condition-6-1", 3),
    "6-2": ("condition-6-2", 5),
    "6-3": ("condition-6-3", 2),
    "6-4": ("condition-6-4", 8),
    "6-5": ("condition-6-5", 3),
    "6-6": ("condition-6-6", None),
    "6-7": ("condition-6-7", None),
    "6-7-default": ("condition-6-7-default", None),
    "6-8": ("condition-6-8", None),
    "6-9": ("condition-6-9", None),
    "6-10": ("condition-6-10", None),
    "6-11": ("condition-6-11", None),
    "6-12": ("condition-6-12", 2),
    "6-13": ("condition-6-13", None),
}


def _polls(name: str, checks: int, at: str = "0") -> list[tuple[str, str, str]]:
    """The recorded shape of `checks` checks with a wait between each two."""
    shape = [(at, "condition", name)]
    for n in range(1, checks + 1):
        shape.append((f"{at}.{2 * n - 2}", "step", f"{name}-{n}"))
        if n < checks:
            shape.append((f"{at}.{2 * n - 1}", "sleep", f"{name}-wait-{n}"))
    return shape


def _states(o, at: str = "0") -> list:
    """The state each check returned, in order."""
    steps = [r for r in o.ops.values() if r.parent_id == at and r.kind.value == "step"]
    return [json.loads(r.result) for r in sorted(steps, key=lambda r: int(r.op_id.split(".")[-1]))]


def test_6_1_wait_for_condition_basic(outcomes) -> None:
    o = outcomes["6-1"]
    assert (o.status, o.output) == ("completed", 3)
    assert o.shape() == _polls("poll", 3)
    assert _states(o) == [1, 2, 3] and json.loads(o.ops["0"].result) == 3
    assert o.parks == 2 and o.ran("check") == 3  # each check ran once, none on replay


def test_6_2_wait_for_condition_met_at_once(outcomes) -> None:
    o = outcomes["6-2"]
    assert (o.status, o.output) == ("completed", 5)
    assert o.shape() == _polls("poll", 1)
    assert o.parks == 0 and o.ran("check") == 1


def test_6_3_wait_for_condition_with_explicit_name(outcomes) -> None:
    o = outcomes["6-3"]
    assert (o.status, o.output) == ("completed", 2)
    assert o.shape() == _polls("poll-status", 2)
    assert o.parks == 1


def test_6_4_wait_for_condition_custom_initial_state(outcomes) -> None:
    o = outcomes["6-4"]
    assert (o.status, o.output) == ("completed", 8)
    assert _states(o) == [6, 7, 8]
    assert o.parks == 2 and o.ran("check") == 3


def test_6_5_wait_for_condition_fixed_delay(outcomes) -> None:
    """The ready-made `backoff_until` with factor 1: each wait is exactly 2 s."""
    o = outcomes["6-5"]
    assert (o.status, o.output) == ("completed", 3)
    assert o.shape() == _polls("poll", 3)
    waits = [o.ops["0.1"], o.ops["0.3"]]
    assert [w.wake_at - w.started_at for w in waits] == [2000, 2000]
    assert o.ran("check") == 3


def test_6_6_wait_for_condition_max_attempts_exceeded(outcomes) -> None:
    o = outcomes["6-6"]
    assert o.status == "failed" and o.error_type == "ChildContextError"
    assert o.ops["0"].error.type == "ConditionNotMetError"
    assert "after 3 checks" in o.ops["0"].error.message
    assert o.shape() == _polls("poll", 3)
    assert o.parks == 2 and o.ran("check") == 3


def test_6_7_wait_for_condition_check_raises(outcomes) -> None:
    """Equivalent: a check is a step and is retried by its policy (the default
    unless given); with `retry=NO_RETRY`, as Lambda's check, it fails at once,
    and under the engine's default it fails after three attempts."""
    o = outcomes["6-7"]
    assert o.status == "failed" and o.error_type == "ChildContextError"
    assert o.shape() == _polls("poll", 1)
    assert o.ops["0.0"].error.type == "RuntimeError"
    assert o.ops["0"].error.type == "StepFailedError"
    assert o.ran("check") == 1 and o.parks == 0
    default = outcomes["6-7-default"]
    assert default.status == "failed" and default.error_type == "ChildContextError"
    assert default.shape() == _polls("poll", 1)
    assert default.ran("check") == 3 and len(default.ops["0.0"].attempts) == 3
    assert default.ops["0.0"].error.type == "RuntimeError"


def test_6_8_wait_for_condition_check_raises_caught(outcomes) -> None:
    o = outcomes["6-8"]
    assert (o.status, o.output) == ("completed", "recovered")
    assert o.ops["0"].error is not None and o.ran("check") == 1


def test_6_9_wait_for_condition_object_state(outcomes) -> None:
    o = outcomes["6-9"]
    assert (o.status, o.output) == ("completed", {"status": "DONE", "attempts": 2})
    assert _states(o) == [
        {"status": "PENDING", "attempts": 1},
        {"status": "DONE", "attempts": 2},
    ]
    assert o.parks == 1


def test_6_10_wait_for_condition_null_state(outcomes) -> None:
    o = outcomes["6-10"]
    assert (o.status, o.output) == ("completed", None)
    assert o.shape() == _polls("poll", 1) and o.ops["0"].result == "null"


def test_6_11_wait_for_condition_state_serdes(outcomes) -> None:
    """Equivalent: the check's return annotation serializes the state into each
    step record ("enc:x") and validates it back on replay ("x")."""
    o = outcomes["6-11"]
    assert (o.status, o.output) == ("completed", "xx")
    assert _states(o) == ["enc:x", "enc:xx"]
    assert json.loads(o.ops["0"].result) == "enc:xx"
    assert o.parks == 1 and o.ran("check") == 2


def test_6_12_wait_for_condition_then_a_step(outcomes) -> None:
    o = outcomes["6-12"]
    assert (o.status, o.output) == ("completed", 20)
    assert o.shape() == [*_polls("poll", 2), ("1", "step", "times-ten")]
    assert o.ran("times-ten") == 1


def test_6_13_two_sequential_wait_for_conditions(outcomes) -> None:
    o = outcomes["6-13"]
    assert (o.status, o.output) == ("completed", 4)
    assert o.shape() == [*_polls("first", 2), *_polls("second", 2, at="1")]
    assert _states(o, "0") == [1, 2] and _states(o, "1") == [3, 4]
    # Parked in the first (after check 1), then in the second (after check 3).
    assert [set(ops) for _, ops in o.rounds] == [
        {"0.0", "0.1"},
        {"0", "0.0", "0.1", "0.2", "1.0", "1.1"},
    ]
    assert o.ran("check") == 4
