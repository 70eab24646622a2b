"""Conformance, invoke suite (requirements 5-x): `ctx.invoke` starts another
workflow as a child run (id `<parent>-<op id>`), waits for its end and returns
its output, or raises ChildWorkflowError; the outcome is recorded at the
operation (kind "invoke"), so a replay neither starts the child again nor
waits for it.

Lambda's invocation counts are not asserted here: the parent parks on its
child unless the child ended before the park, which depends on timing. What
is checked is what the history is evidence of: the outcome, the record, the
child run (started once, with the parent's id) and what ran again on replay.
"""

from __future__ import annotations

import json

from tests.conformance import workflows, workflows_invoke
from tests.conformance.workflows_invoke import LARGE_INPUT

WORKFLOWS = workflows_invoke.ALL

SCENARIOS = {
    "5-1": ("invoke-5-1", "in-5-1"),
    "5-2": ("invoke-5-2", {"name": "name-5-2", "payload": "in-5-2"}),
    "5-3": ("invoke-5-1", {"nested": {"key": "value", "items": [1, 2, 3]}, "source": "test"}),
    "5-4": ("invoke-5-1", None),
    "5-5": ("invoke-5-5", None),
    "5-6": ("invoke-5-6", None),
    "5-7": ("invoke-5-7", None),
    "5-9": ("invoke-5-9", None),
    "5-10": ("invoke-5-10", None),
    "5-11": ("invoke-5-11", None),
    "5-12": ("invoke-5-12", None),
    "5-13": ("invoke-5-13", None),
    "5-14": ("invoke-5-14", None),
    "5-15": ("invoke-5-15", {"data": "hello"}),
    "5-16": ("invoke-5-16", "hello"),
}


def _child(o, op_id: str = "0"):
    """The child run operation `op_id` started; it ran its body exactly once."""
    child = o.children[op_id]
    assert child.parent_id == o.run.id and child.parent_op == op_id
    assert child.id == f"{o.run.id}-{op_id}"
    assert workflows.executions(child.id, "target") == 1
    return child


def _recorded(o, op_id: str = "0") -> dict:
    """The child's outcome as the parent recorded it at the invoke operation."""
    rec = o.ops[op_id]
    assert rec.resolved
    return json.loads(rec.result)


def test_5_1_invoke_basic(outcomes) -> None:
    o = outcomes["5-1"]
    assert (o.status, o.output) == ("completed", "in-5-1")
    assert o.shape() == [("0", "invoke", "invoke")]
    child = _child(o)
    assert child.name == "conf-echo" and json.loads(child.input) == "in-5-1"
    assert _recorded(o)["status"] == "completed"


def test_5_2_invoke_with_name(outcomes) -> None:
    o = outcomes["5-2"]
    assert (o.status, o.output) == ("completed", "in-5-2")
    assert o.shape() == [("0", "invoke", "name-5-2")]
    _child(o)


def test_5_3_invoke_returns_a_complex_object(outcomes) -> None:
    o = outcomes["5-3"]
    nested = {"nested": {"key": "value", "items": [1, 2, 3]}, "source": "test"}
    assert (o.status, o.output) == ("completed", nested)
    assert json.loads(_child(o).output) == nested


def test_5_4_invoke_returns_null(outcomes) -> None:
    o = outcomes["5-4"]
    assert (o.status, o.output) == ("completed", None)
    child = _child(o)
    assert child.status.value == "completed" and json.loads(child.output) is None


def test_5_5_invoke_target_fails(outcomes) -> None:
    o = outcomes["5-5"]
    assert o.status == "failed" and o.error_type == "ChildWorkflowError"
    assert "target failed" in o.run.error.message
    child = _child(o)
    assert child.status.value == "failed" and child.error.type == "RuntimeError"
    assert _recorded(o)["status"] == "failed"


def test_5_6_invoke_target_fails_caught(outcomes) -> None:
    o = outcomes["5-6"]
    assert o.status == "completed"
    assert o.output == {"fallback": True, "status": "failed", "errorType": "RuntimeError"}
    _child(o)


def test_5_7_invoke_large_payload(outcomes) -> None:
    """Near the limit: a child's input may hold up to 128 KiB (MAX_INPUT_BYTES);
    the payload is 120 KiB of data."""
    o = outcomes["5-7"]
    assert (o.status, o.output) == ("completed", {"size": LARGE_INPUT})
    assert len(_child(o).input) > LARGE_INPUT


def test_5_9_invoke_replay_returns_the_recorded_result(outcomes) -> None:
    o = outcomes["5-9"]
    assert (o.status, o.output) == ("completed", "cached")
    assert o.shape() == [("0", "invoke", "invoke"), ("1", "sleep", "wait")]
    # Parked on the wait with the invoke resolved; the replay after the wait read
    # the record and started nothing (the child ran once, and exists once).
    assert o.rounds and o.rounds[-1][1]["0"].resolved
    _child(o)


def test_5_10_invoke_replay_rethrows_the_recorded_error(outcomes) -> None:
    o = outcomes["5-10"]
    assert (o.status, o.output) == ("completed", {"caught": ["failed"]})
    assert o.shape() == [("0", "invoke", "invoke"), ("1", "sleep", "wait")]
    assert o.rounds and o.rounds[-1][1]["0"].resolved
    _child(o)


def test_5_11_step_then_invoke(outcomes) -> None:
    o = outcomes["5-11"]
    assert (o.status, o.output) == ("completed", "from-step")
    assert o.shape() == [("0", "step", "step"), ("1", "invoke", "invoke")]
    assert o.ran("step") == 1  # not run again by the replay after the child ended
    _child(o, "1")


def test_5_12_invoke_then_step(outcomes) -> None:
    o = outcomes["5-12"]
    assert (o.status, o.output) == ("completed", "from-invoke-processed")
    assert o.shape() == [("0", "invoke", "invoke"), ("1", "step", "step")]
    assert o.ran("step") == 1
    _child(o)


def test_5_13_invoke_inside_a_child_context(outcomes) -> None:
    o = outcomes["5-13"]
    assert (o.status, o.output) == ("completed", "in-context")
    assert o.shape() == [("0", "context", "child"), ("0.0", "invoke", "invoke")]
    assert o.ops["0.0"].parent_id == "0"
    _child(o, "0.0")


def test_5_14_two_sequential_invokes(outcomes) -> None:
    o = outcomes["5-14"]
    assert (o.status, o.output) == ("completed", ["one", "two"])
    assert o.shape() == [("0", "invoke", "first"), ("1", "invoke", "second")]
    first, second = _child(o, "0"), _child(o, "1")
    # The second child was started only after the first had ended.
    assert second.created_at >= first.updated_at


def test_5_15_invoke_custom_payload_serdes(outcomes) -> None:
    """Equivalent: the payload is a pydantic model whose field serializer
    upper-cases it; the child receives the serialized form."""
    o = outcomes["5-15"]
    assert (o.status, o.output) == ("completed", {"data": "HELLO"})
    assert json.loads(_child(o).input) == {"data": "HELLO"}


def test_5_16_invoke_custom_result_serdes(outcomes) -> None:
    """Equivalent: `result_type=Annotated[str, AfterValidator(str.upper)]` decodes
    the child's output; the record keeps the output as the child returned it."""
    o = outcomes["5-16"]
    assert (o.status, o.output) == ("completed", "HELLO")
    assert _recorded(o)["output"] == "hello"
    assert json.loads(_child(o).output) == "hello"
