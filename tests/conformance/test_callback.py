"""Conformance, callback suite (requirements 4-x): `ctx.create_callback` records
the callback (kind "callback", its token and deadline) and `cb.result()` waits
for the outside system's `POST /callbacks/{id}/succeed|fail`, the timeout
(counted from the creation) or the heartbeat timeout.

The tier's driver is the outside system: each scenario's actions are played in
order, by callback name, once the run has parked (`conftest.py`). A completion
that comes while the run sleeps does not wake it; it is kept and taken when
the run gets to `result()`, so where Lambda re-invokes once for the completion
and once for the wait, the run here parks once.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.client import Client
from orchestrator.local.worker_thread import BackgroundWorker
from tests.conformance import workflows_callback
from tests.helpers import wait_for, wait_status

WORKFLOWS = workflows_callback.ALL

REJECT = ("fail", ("RejectedError", "not approved"))
HOUR_S = 3600

SCENARIOS = {
    "4-1": ("callback-4-1", "cb-4-1", [("succeed", "cb-4-1", "payload-4-1")]),
    "4-2": ("callback-4-2", None, [("succeed", "approval", "payload-4-2")]),
    "4-3": ("callback-4-3", "cb-4-3"),
    "4-4": ("callback-4-4", "cb-4-4"),
    "4-6": ("callback-4-1", "cb-4-6", [(REJECT[0], "cb-4-6", REJECT[1])]),
    "4-7": ("callback-4-7", {"name": "cb-4-7"}, [(REJECT[0], "cb-4-7", REJECT[1])]),
    "4-8": ("callback-4-7", {"name": "cb-4-8", "timeout": HOUR_S}),
    "4-9": ("callback-4-9", {"name": "cb-4-9"}, [("succeed", "cb-4-9", "payload-4-9")]),
    "4-10": ("callback-4-9", {"name": "cb-4-10"}, [(REJECT[0], "cb-4-10", REJECT[1])]),
    "4-11": ("callback-4-9", {"name": "cb-4-11", "timeout": True}),
    "4-12": ("callback-4-12", {"name": "cb-4-12"}, [("succeed", "cb-4-12", "payload-4-12")]),
    "4-13": ("callback-4-12", {"name": "cb-4-13"}, [(REJECT[0], "cb-4-13", REJECT[1])]),
    "4-14": ("callback-4-12", {"name": "cb-4-14", "timeout": True}),
    "4-15": (
        "callback-4-15",
        "cb-4-15",
        [("succeed", "cb-4-15", {"label": "shipped", "at": "2026-11-26T18:00:00+00:00"})],
    ),
    "4-16": (
        "callback-4-16",
        "cb-4-16",
        [("succeed", "cb-4-16", 12.25), ("succeed", "cb-4-16-bad", "twelve")],
    ),
    "4-17": (
        "callback-4-17",
        ["a-4-17", "b-4-17"],
        [("succeed", "a-4-17", "pa-4-17"), ("succeed", "b-4-17", "pb-4-17")],
    ),
    "4-18": (
        "callback-4-18",
        ["a-4-18", "b-4-18"],
        [("succeed", "a-4-18", "pa-4-18"), ("succeed", "b-4-18", "pb-4-18")],
    ),
    "4-19": (
        "callback-4-19",
        ["a-4-19", "b-4-19"],
        [("succeed", "a-4-19", "pa-4-19"), ("succeed", "b-4-19", "pb-4-19")],
    ),
}


def _result(o, op_id: str = "0") -> Any:
    """What the callback's record holds once resolved (a completion's body)."""
    rec = o.ops[op_id]
    assert rec.resolved
    return json.loads(rec.result) if rec.result else None


def _woke(o) -> list[bool]:
    return [reply["woke"] for kind, reply in o.replies if kind != "heartbeat"]


def test_4_1_create_callback_basic(outcomes) -> None:
    o = outcomes["4-1"]
    assert (o.status, o.output) == ("completed", "payload-4-1")
    assert o.shape() == [("0", "callback", "cb-4-1")]
    assert o.parks == 1 and o.rounds[0][0].status.value == "waiting"
    assert o.ops["0"].callback_id and len(o.ops["0"].callback_id) >= 32  # 192 random bits
    assert _woke(o) == [True]
    assert _result(o) == {"ok": True, "result": "payload-4-1"}


def test_4_2_create_callback_with_explicit_name(outcomes) -> None:
    o = outcomes["4-2"]
    assert (o.status, o.output) == ("completed", "payload-4-2")
    assert o.shape() == [("0", "callback", "approval")]
    assert o.parks == 1


def test_4_3_create_callback_timeout(outcomes) -> None:
    o = outcomes["4-3"]
    assert o.status == "failed" and o.error_type == "CallbackTimeoutError"
    assert "within its timeout" in o.run.error.message
    parked, ops = o.rounds[0]
    assert parked.wake_at == ops["0"].wake_at == ops["0"].started_at + HOUR_S * 1000
    assert o.ops["0"].timed_out and o.parks == 1


def test_4_4_create_callback_heartbeat_timeout(outcomes) -> None:
    o = outcomes["4-4"]
    assert o.status == "failed" and o.error_type == "CallbackTimeoutError"
    assert "heartbeat" in o.run.error.message
    parked, ops = o.rounds[0]
    assert ops["0"].wake_at is None  # no overall timeout: the park is the heartbeat's
    assert parked.wake_at == ops["0"].started_at + HOUR_S * 1000
    assert o.ops["0"].timed_out


def test_4_5_create_callback_heartbeat_then_success(stack) -> None:
    """The heartbeat moves the heartbeat deadline: the run, woken at the deadline
    it knew, parks again until the moved one, and the success then comes through."""
    out = heartbeat_then_success(stack, "callback-4-5", "cb-4-5", "cb-4-5")
    assert out == "payload"


def heartbeat_then_success(stack, name: str, input: Any, callback: str) -> Any:
    """Run `name` (a workflow whose callback `callback` has a one-hour heartbeat
    timeout): heartbeat after 40 minutes, let the first deadline pass, succeed."""
    client = Client(stack.api_url)
    with BackgroundWorker(WORKFLOWS, stack.settings, clock=stack.clock):
        run_id = client.start(name, input)["id"]
        first = wait_status(stack, run_id, "waiting", timeout=30)
        token = next(s.callback_id for s in stack.store.steps(run_id) if s.name == callback)
        stack.clock.advance(40 * 60)
        assert client.callback_heartbeat(token)["heartbeat_deadline"] is not None
        stack.clock.advance(40 * 60)  # past the first heartbeat deadline
        again = wait_for(
            lambda: (
                (r := stack.store.get(run_id)).epoch > first.epoch
                and r.status.value == "waiting"
                and r
            ),
            timeout=30,
        )
        assert again.wake_at > first.wake_at  # parked until the moved deadline
        assert client.callback_succeed(token, "payload")["woke"] is True
        done = wait_status(stack, run_id, "completed", "failed", timeout=30)
    assert done.status.value == "completed", done.error
    return json.loads(done.output)


def test_4_6_create_callback_failure(outcomes) -> None:
    o = outcomes["4-6"]
    assert o.status == "failed" and o.error_type == "CallbackFailedError"
    assert "RejectedError: not approved" in o.run.error.message
    assert _result(o)["error"] == {"type": "RejectedError", "message": "not approved"}
    assert o.parks == 1


def test_4_7_callback_step_then_failure(outcomes) -> None:
    o = outcomes["4-7"]
    assert o.status == "failed" and o.error_type == "CallbackFailedError"
    assert o.shape() == [("0", "callback", "cb-4-7"), ("1", "step", "step")]
    assert set(o.rounds[0][1]) == {"0", "1"}  # parked after the step, on the callback
    assert o.ran("step") == 1  # the replay after the failure did not run it again


def test_4_8_callback_step_then_timeout(outcomes) -> None:
    o = outcomes["4-8"]
    assert o.status == "failed" and o.error_type == "CallbackTimeoutError"
    assert o.shape() == [("0", "callback", "cb-4-8"), ("1", "step", "step")]
    assert o.ran("step") == 1 and o.ops["0"].timed_out


def test_4_9_callback_wait_then_success(outcomes) -> None:
    o = outcomes["4-9"]
    assert (o.status, o.output) == ("completed", "payload-4-9")
    assert o.shape() == [("0", "callback", "cb-4-9"), ("1", "sleep", "wait")]
    # The success came while the run slept: kept, not a wake-up; taken after the wait.
    assert _woke(o) == [False]
    assert o.parks == 1 and o.rounds[0][0].status.value == "sleeping"


def test_4_10_callback_wait_then_failure(outcomes) -> None:
    o = outcomes["4-10"]
    assert o.status == "failed" and o.error_type == "CallbackFailedError"
    assert _woke(o) == [False] and o.parks == 1


def test_4_11_callback_timeout_passes_during_the_wait(outcomes) -> None:
    o = outcomes["4-11"]
    assert o.status == "failed" and o.error_type == "CallbackTimeoutError"
    parked, ops = o.rounds[0]
    assert parked.status.value == "sleeping" and ops["0"].wake_at < ops["1"].wake_at
    # Timed out as of the deadline, recorded once the run got to result() after the wait.
    assert o.ops["0"].timed_out and o.ops["0"].recorded_at >= ops["1"].wake_at
    assert o.parks == 1


def test_4_12_callback_success_then_wait_replays(outcomes) -> None:
    o = outcomes["4-12"]
    assert (o.status, o.output) == ("completed", {"ok": "payload-4-12"})
    assert o.shape() == [("0", "callback", "cb-4-12"), ("1", "sleep", "wait")]
    assert [r.status.value for r, _ in o.rounds] == ["waiting", "sleeping"]
    assert o.rounds[1][1]["0"].resolved  # the replay after the wait read the record


def test_4_13_callback_failure_caught_then_wait(outcomes) -> None:
    o = outcomes["4-13"]
    assert (o.status, o.output) == ("completed", {"failed": ["RejectedError", "not approved"]})
    assert [r.status.value for r, _ in o.rounds] == ["waiting", "sleeping"]


def test_4_14_callback_timeout_caught_then_wait(outcomes) -> None:
    o = outcomes["4-14"]
    assert (o.status, o.output) == ("completed", {"timeout": "timeout"})
    assert [r.status.value for r, _ in o.rounds] == ["waiting", "sleeping"]
    assert o.ops["0"].timed_out


def test_4_15_a_result_type_turns_the_posted_object_into_a_model(outcomes) -> None:
    o = outcomes["4-15"]
    assert o.status == "completed", o.error_type
    assert o.output == {"label": "shipped", "at": "2026-11-26T18:00:00+00:00", "year": 2026}
    # The record keeps the JSON as posted; the type applies when result() returns.
    assert _result(o) == {
        "ok": True,
        "result": {"label": "shipped", "at": "2026-11-26T18:00:00+00:00"},
    }


def test_4_16_a_result_type_turns_the_posted_number_into_a_decimal(outcomes) -> None:
    o = outcomes["4-16"]
    assert o.status == "completed", o.error_type
    assert o.output == {"type": "Decimal", "value": "24.50", "bad": "ValidationError"}


def test_4_17_two_callbacks_created_and_awaited_in_turn(outcomes) -> None:
    o = outcomes["4-17"]
    assert (o.status, o.output) == ("completed", ["pa-4-17", "pb-4-17"])
    assert o.shape() == [("0", "callback", "a-4-17"), ("1", "callback", "b-4-17")]
    assert [set(ops) for _, ops in o.rounds] == [{"0"}, {"0", "1"}]
    assert _woke(o) == [True, True]


def test_4_18_two_callbacks_awaited_in_creation_order(outcomes) -> None:
    o = outcomes["4-18"]
    assert (o.status, o.output) == ("completed", ["pa-4-18", "pb-4-18"])
    assert [set(ops) for _, ops in o.rounds] == [{"0", "1"}, {"0", "1"}]
    assert _woke(o) == [True, True] and o.parks == 2


def test_4_19_two_callbacks_awaited_in_reverse_order(outcomes) -> None:
    """A completes first while the run waits for B: kept without a wake-up; B's
    completion wakes the run, which then takes A's at once. One park."""
    o = outcomes["4-19"]
    assert (o.status, o.output) == ("completed", ["pa-4-19", "pb-4-19"])
    assert _woke(o) == [False, True] and o.parks == 1
