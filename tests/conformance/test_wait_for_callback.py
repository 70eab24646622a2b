"""Conformance, wait_for_callback suite (requirements 7-x): `ctx.wait_for_callback`
creates a callback, runs the submitter as the step `<name>-submit` with the
callback's id, and returns the callback's result.

Equivalent shape: Lambda records the operation as a context (ContextStarted /
ContextSucceeded) holding the callback and the submitter step. Here the
operation is the callback record at its own id followed by the submitter step
at the next one (`("0", "callback", name), ("1", "step", "<name>-submit")`);
there is no enclosing record, and an error is raised as itself
(CallbackFailedError, CallbackTimeoutError, StepFailedError) rather than
wrapped in a context error.
"""

from __future__ import annotations

import json

from tests.conformance import workflows_callback
from tests.conformance.test_callback import heartbeat_then_success

WORKFLOWS = workflows_callback.ALL

REJECT = ("RejectedError", "not approved")

HAND_OVER = "wfc_unnamed.<locals>.hand_over"

SCENARIOS = {
    "7-1": ("wfc-basic", "cb-7-1", [("succeed", "cb-7-1", "payload-7-1")]),
    "7-2": ("wfc-7-2", None, [("succeed", "approval", "payload-7-2")]),
    "7-3": ("wfc-7-3", None, [("succeed", "wait_for_callback", "payload-7-3")]),
    "7-3-def": ("wfc-7-3-def", None, [("succeed", HAND_OVER, "payload-7-3-def")]),
    "7-4": ("wfc-basic", "cb-7-4", [("fail", "cb-7-4", REJECT)]),
    "7-5": ("wfc-timeouts", {"name": "cb-7-5", "timeout": True}),
    "7-6": ("wfc-7-6", "cb-7-6", [("fail", "cb-7-6", REJECT)]),
    "7-7": ("wfc-7-7", "cb-7-7"),
    "7-8": ("wfc-7-8", "cb-7-8", [("succeed", "cb-7-8", "payload-7-8")]),
    "7-9": (
        "wfc-7-9",
        None,
        [("succeed", "first", "payload-7-9-1"), ("succeed", "second", "payload-7-9-2")],
    ),
    "7-10": ("wfc-7-10", "cb-7-10", [("succeed", "cb-7-10", "payload-7-10")]),
    "7-11": ("wfc-7-11", "cb-7-11", [("succeed", "cb-7-11", {"status": "approved"})]),
    "7-12": ("wfc-timeouts", {"name": "cb-7-12", "heartbeat": True}),
    "7-14": ("wfc-timeouts", {"name": "cb-7-14", "timeout": True, "catch": True}),
    "7-15": ("wfc-basic", "cb-7-15", [("succeed", "cb-7-15", None)]),
}


def test_7_3_wait_for_callback_without_a_name(outcomes) -> None:
    """No name: an anonymous submitter gives the kind's name, a named one its
    qualified name; the submitter step is `<name>-submit` as always."""
    o = outcomes["7-3"]
    assert (o.status, o.output) == ("completed", "payload-7-3")
    assert o.shape() == _shape("wait_for_callback")
    _submitted(o)
    named = outcomes["7-3-def"]
    assert (named.status, named.output) == ("completed", "payload-7-3-def")
    assert named.shape() == _shape(HAND_OVER)


def _shape(name: str, at: str = "") -> list[tuple[str, str, str]]:
    return [(f"{at}0", "callback", name), (f"{at}1", "step", f"{name}-submit")]


def _submitted(o, at: str = "") -> None:
    """The submitter ran once, with the callback's id, before the run parked."""
    assert o.ran("submit") == 1
    token = o.ops[f"{at}0"].callback_id
    assert json.loads(o.ops[f"{at}1"].result) == token[:4]
    assert o.rounds[-1][1][f"{at}1"].resolved


def test_7_1_wait_for_callback_basic(outcomes) -> None:
    o = outcomes["7-1"]
    assert (o.status, o.output) == ("completed", "payload-7-1")
    assert o.shape() == _shape("cb-7-1")
    assert o.parks == 1 and o.rounds[0][0].status.value == "waiting"
    _submitted(o)


def test_7_2_wait_for_callback_with_explicit_name(outcomes) -> None:
    o = outcomes["7-2"]
    assert (o.status, o.output) == ("completed", "payload-7-2")
    assert o.shape() == _shape("approval")


def test_7_4_wait_for_callback_failure_uncaught(outcomes) -> None:
    o = outcomes["7-4"]
    assert o.status == "failed" and o.error_type == "CallbackFailedError"
    assert "RejectedError: not approved" in o.run.error.message
    _submitted(o)


def test_7_5_wait_for_callback_timeout(outcomes) -> None:
    o = outcomes["7-5"]
    assert o.status == "failed" and o.error_type == "CallbackTimeoutError"
    assert "within its timeout" in o.run.error.message
    assert o.ops["0"].timed_out and o.parks == 1
    _submitted(o)


def test_7_6_wait_for_callback_failure_caught(outcomes) -> None:
    o = outcomes["7-6"]
    assert (o.status, o.output) == ("completed", "recovered")
    assert json.loads(o.ops["0"].result)["error"]["type"] == "RejectedError"


def test_7_7_wait_for_callback_submitter_retry_exhaustion(outcomes) -> None:
    o = outcomes["7-7"]
    assert o.status == "failed" and o.error_type == "StepFailedError"
    assert o.shape() == _shape("cb-7-7")
    assert o.ran("submit") == 2 and o.parks == 1  # parked between the two attempts
    assert o.rounds[0][1]["1"].retry_at is not None
    assert not o.ops["0"].resolved  # created, never completed
    assert len(o.ops["1"].attempts) == 2


def test_7_8_wait_for_callback_inside_a_child_context(outcomes) -> None:
    o = outcomes["7-8"]
    assert (o.status, o.output) == ("completed", "payload-7-8")
    assert o.shape() == [("0", "context", "wrapper"), *_shape("cb-7-8", at="0.")]
    assert o.ops["0.0"].parent_id == "0" and o.ops["0.1"].parent_id == "0"
    _submitted(o, "0.")


def test_7_9_two_sequential_wait_for_callbacks(outcomes) -> None:
    o = outcomes["7-9"]
    assert (o.status, o.output) == ("completed", "payload-7-9-2")
    assert o.shape() == [
        ("0", "callback", "first"),
        ("1", "step", "first-submit"),
        ("2", "callback", "second"),
        ("3", "step", "second-submit"),
    ]
    assert [set(ops) for _, ops in o.rounds] == [{"0", "1"}, {"0", "1", "2", "3"}]
    assert o.ran("submit") == 2  # once per operation, none again on replay


def test_7_10_wait_for_callback_after_a_wait_and_a_step(outcomes) -> None:
    o = outcomes["7-10"]
    assert (o.status, o.output) == ("completed", "payload-7-10")
    assert o.shape() == [
        ("0", "sleep", "wait"),
        ("1", "step", "fixed"),
        ("2", "callback", "cb-7-10"),
        ("3", "step", "cb-7-10-submit"),
    ]
    assert [r.status.value for r, _ in o.rounds] == ["sleeping", "waiting"]
    assert o.ran("fixed") == 1 and o.ran("submit") == 1


def test_7_11_wait_for_callback_structured_result(outcomes) -> None:
    """Equivalent: a callback's result is the JSON value the outside system sent
    (here an object), with no deserializer to configure."""
    o = outcomes["7-11"]
    assert (o.status, o.output) == ("completed", "approved")
    assert json.loads(o.ops["0"].result)["result"] == {"status": "approved"}


def test_7_12_wait_for_callback_heartbeat_timeout(outcomes) -> None:
    o = outcomes["7-12"]
    assert o.status == "failed" and o.error_type == "CallbackTimeoutError"
    assert "heartbeat" in o.run.error.message
    _submitted(o)


def test_7_13_wait_for_callback_heartbeat_then_success(stack) -> None:
    out = heartbeat_then_success(
        stack, "wfc-timeouts", {"name": "cb-7-13", "heartbeat": True}, "cb-7-13"
    )
    assert out == "payload"


def test_7_14_wait_for_callback_timeout_caught(outcomes) -> None:
    o = outcomes["7-14"]
    assert (o.status, o.output) == ("completed", "timed-out-handled")
    assert o.ops["0"].timed_out


def test_7_15_wait_for_callback_null_result(outcomes) -> None:
    o = outcomes["7-15"]
    assert (o.status, o.output) == ("completed", None)
    assert json.loads(o.ops["0"].result) == {"ok": True, "result": None}
