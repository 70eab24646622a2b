"""Conformance, wait suite (requirements 2-x): `ctx.sleep` parks the run and the
replay after the wake-up goes on."""

from __future__ import annotations

from tests.conformance import workflows_wait

WORKFLOWS = workflows_wait.ALL

SCENARIOS = {
    "2-1": ("wait-2-1", None),
    "2-2": ("wait-2-2", None),
    "2-3": ("wait-2-3", None),
    "2-4": ("wait-2-4", None),
    "2-5": ("wait-2-5", None),
}


def _duration_ms(o, op_id: str = "0") -> int:
    rec = o.ops[op_id]
    return rec.wake_at - rec.started_at


def test_2_1_wait_basic(outcomes) -> None:
    o = outcomes["2-1"]
    assert (o.status, o.output) == ("completed", None)
    assert o.shape() == [("0", "sleep", "wait")]
    assert o.parks == 1 and o.rounds[0][0].status.value == "sleeping"


def test_2_2_wait_with_name(outcomes) -> None:
    o = outcomes["2-2"]
    assert o.status == "completed"
    assert o.shape() == [("0", "sleep", "custom_wait_name")]
    assert o.parks == 1


def test_2_3_multiple_sequential_waits(outcomes) -> None:
    o = outcomes["2-3"]
    assert (o.status, o.output) == ("completed", {"completedWaits": 2})
    assert o.shape() == [("0", "sleep", "wait-1"), ("1", "sleep", "wait-2")]
    # Parked twice: on wait-1 alone, then (after the replay passed it) on wait-2.
    assert [set(ops) for _, ops in o.rounds] == [{"0"}, {"0", "1"}]


def test_2_4_wait_duration_in_minutes(outcomes) -> None:
    o = outcomes["2-4"]
    parked, _ = o.rounds[0]
    assert parked.status.value == "sleeping" and parked.wake_at == o.ops["0"].wake_at
    assert _duration_ms(o) == 60_000
    assert o.status == "completed" and o.parks == 1


def test_2_5_wait_duration_of_one_hour(outcomes) -> None:
    o = outcomes["2-5"]
    parked, _ = o.rounds[0]
    assert parked.status.value == "sleeping" and parked.wake_at == o.ops["0"].wake_at
    assert _duration_ms(o) == 3_600_000
    assert parked.timer is not None  # beyond 15 minutes: an EventBridge Scheduler schedule
    assert o.status == "completed" and o.parks == 1
