"""Conformance, child context suite (requirements 3-x): `ctx.run_in_child_context`
is recorded as one unit (kind "context") whose operations live under its id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.local.worker_thread import BackgroundWorker
from tests.conformance import workflows, workflows_child
from tests.conftest import TEST_SETTINGS, worker_env
from tests.helpers import ROOT, wait_status

WORKFLOWS = workflows_child.ALL

SCENARIOS = {
    "3-1": ("child-3-1", "in-3-1"),
    "3-2": ("child-3-2", {"name": "ctx-name-3-2", "value": "value-3-2"}),
    "3-3": ("child-3-3", "in-3-3"),
    "3-4": ("child-3-4", None),
    "3-5": ("child-3-5", "in-3-5"),
    "3-6": ("child-3-6", "in-3-6"),
    "3-7": ("child-3-7", "in-3-7"),
    "3-8": ("child-3-8", None),
    "3-9": ("child-3-9", "in-3-9"),
    "3-10": ("child-3-10", "in-3-10"),
    "3-11": ("child-3-11", "in-3-11"),
    "3-13": ("child-3-13", "in-3-13"),
    "3-14": ("child-3-14", "hello child"),
    "3-15": ("child-3-15", None),
    "3-16": ("child-3-16", None),
    "3-17": ("child-3-17", "in-3-17"),
    "3-18": ("child-3-18", "in-3-18"),
}


def test_3_1_child_context_with_one_step(outcomes) -> None:
    o = outcomes["3-1"]
    assert (o.status, o.output) == ("completed", "in-3-1")
    assert o.shape() == [("0", "context", "child"), ("0.0", "step", "echo")]
    assert o.ops["0.0"].parent_id == "0"
    assert o.ran("echo") == 1


def test_3_2_child_context_with_name(outcomes) -> None:
    o = outcomes["3-2"]
    assert (o.status, o.output) == ("completed", "value-3-2")
    assert o.shape() == [("0", "context", "ctx-name-3-2"), ("0.0", "step", "echo")]


def test_3_3_child_context_with_sequential_steps(outcomes) -> None:
    o = outcomes["3-3"]
    assert (o.status, o.output) == ("completed", "in-3-3")
    assert o.shape() == [
        ("0", "context", "child"),
        ("0.0", "step", "first"),
        ("0.1", "step", "second"),
    ]
    assert json.loads(o.ops["0"].result) == "in-3-3"


def test_3_4_child_context_error_fails_the_run(outcomes) -> None:
    o = outcomes["3-4"]
    assert o.status == "failed" and o.error_type == "ChildContextError"
    assert o.shape() == [("0", "context", "child"), ("0.0", "step", "failing")]
    assert o.ops["0.0"].error.type == "RuntimeError"
    assert o.ops["0"].error.type == "StepFailedError"  # what the body raised
    assert o.ran("failing") == 1


def test_3_5_child_context_error_caught(outcomes) -> None:
    o = outcomes["3-5"]
    assert (o.status, o.output) == ("completed", "in-3-5")
    assert o.shape() == [
        ("0", "context", "child"),
        ("0.0", "step", "failing"),
        ("1", "step", "recover"),
    ]
    assert o.ops["0"].error is not None and o.ran("recover") == 1


def test_3_6_nested_child_contexts(outcomes) -> None:
    o = outcomes["3-6"]
    assert (o.status, o.output) == ("completed", "in-3-6")
    assert o.shape() == [
        ("0", "context", "outer"),
        ("0.0", "step", "outer-step"),
        ("0.1", "context", "inner"),
        ("0.1.0", "step", "echo"),
    ]
    assert o.ops["0.1"].parent_id == "0" and o.ops["0.1.0"].parent_id == "0.1"


def test_3_7_child_context_step_retry_then_success(outcomes) -> None:
    o = outcomes["3-7"]
    assert (o.status, o.output) == ("completed", "in-3-7")
    assert o.ran("flaky") == 2 and o.parks == 1
    _, ops = o.rounds[0]
    assert "0" not in ops and ops["0.0"].retry_at is not None  # parked between attempts
    assert len(o.ops["0.0"].attempts) == 2


def test_3_8_child_context_step_retry_exhaustion(outcomes) -> None:
    o = outcomes["3-8"]
    assert o.status == "failed" and o.error_type == "ChildContextError"
    assert o.ran("always_fail") == 2 and o.parks == 1
    assert o.ops["0"].error.type == "StepFailedError"


def test_3_9_child_context_replay_returns_the_recorded_result(outcomes) -> None:
    o = outcomes["3-9"]
    assert (o.status, o.output) == ("completed", "in-3-9")
    assert o.parks == 1
    assert o.ran("body") == 1 and o.ran("echo") == 1  # the replay did not enter the body


def test_3_10_child_context_with_step_and_wait_inside(outcomes) -> None:
    o = outcomes["3-10"]
    assert (o.status, o.output) == ("completed", "in-3-10")
    assert o.shape() == [
        ("0", "context", "child"),
        ("0.0", "step", "echo"),
        ("0.1", "sleep", "wait"),
    ]
    _, ops = o.rounds[0]
    assert set(ops) == {"0.0", "0.1"}  # parked inside the child, not yet recorded
    assert o.ran("echo") == 1


def test_3_11_child_context_large_result_replays_children(outcomes) -> None:
    o = outcomes["3-11"]
    assert o.status == "completed"
    assert o.output == {
        "size": len("in-3-11") * (300 * 1024 // len("in-3-11") + 1),
        "prefix": "in-3-11",
    }
    rec = o.ops["0"]
    assert rec.replay_children and rec.result is None  # too large to keep
    # The replay after the wait ran the body again to rebuild the value; its step
    # replayed from its record.
    assert o.ran("body") == 2 and o.ran("echo") == 1


def test_3_12_child_context_interrupted_and_run_again(stack, tmp_path: Path) -> None:
    """The worker process dies inside the child's step (os._exit, as the
    requirement's process.exit); another worker takes the run over once the lease
    has expired and runs the step again: at least once, recorded once."""
    marker = tmp_path / "crashed"
    run, _ = stack.service.start("child-3-12", {"marker": str(marker), "value": "in-3-12"})
    env = worker_env(stack, tmp_path / "exec.log")
    cmd = [sys.executable, "-m", "orchestrator.cli", "worker", "tests.conformance.workflows_child"]
    crashed = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert crashed.returncode == 3 and marker.exists()
    assert stack.store.get(run.id).status.value == "running"  # held by the dead worker
    assert not any(s.resolved for s in stack.store.steps(run.id))  # nothing recorded
    with BackgroundWorker(WORKFLOWS, stack.settings, clock=stack.clock):
        stack.clock.advance(TEST_SETTINGS.lease_seconds + 1)  # the dead worker's lease ends
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert (done.status.value, json.loads(done.output)) == ("completed", "in-3-12")
    ops = {s.op_id: s for s in stack.store.steps(run.id)}
    assert [(i, ops[i].kind.value, ops[i].name) for i in sorted(ops)] == [
        ("0", "context", "child"),
        ("0.0", "step", "crashy"),
    ]
    assert workflows.executions(run.id, "crashy") == 1  # the run after the crash


def test_3_13_child_context_with_only_a_wait(outcomes) -> None:
    o = outcomes["3-13"]
    assert (o.status, o.output) == ("completed", "in-3-13")
    assert o.shape() == [
        ("0", "context", "child"),
        ("0.0", "sleep", "wait"),
        ("1", "step", "outer"),
    ]
    _, ops = o.rounds[0]
    assert set(ops) == {"0.0"}
    assert o.ran("outer") == 1


def test_3_14_child_context_custom_serdes(outcomes) -> None:
    """Equivalent: the child function's return annotation `Annotated[str,
    PlainSerializer(str.upper)]` serializes the context's result."""
    o = outcomes["3-14"]
    assert (o.status, o.output) == ("completed", "HELLO CHILD")
    assert json.loads(o.ops["0"].result) == "HELLO CHILD"
    assert json.loads(o.ops["0.0"].result) == "hello child"  # the step's own result


def test_3_15_child_context_error_without_a_step(outcomes) -> None:
    o = outcomes["3-15"]
    assert o.status == "failed" and o.error_type == "ChildContextError"
    assert o.shape() == [("0", "context", "child")]
    assert o.ops["0"].error.type == "ValueError"


def test_3_16_child_context_returns_null(outcomes) -> None:
    o = outcomes["3-16"]
    assert (o.status, o.output) == ("completed", None)
    assert o.shape() == [("0", "context", "child")] and o.ops["0"].result == "null"


def test_3_17_child_context_body_not_run_again_on_replay(outcomes) -> None:
    """Equivalent: the body's executions are counted (it also logs through the
    replay-aware `ctx.logger`); the replay after the wait does not enter it."""
    o = outcomes["3-17"]
    assert (o.status, o.output) == ("completed", "in-3-17")
    assert o.parks == 1 and o.ran("body") == 1


def test_3_18_child_context_then_step_and_wait_after(outcomes) -> None:
    o = outcomes["3-18"]
    assert (o.status, o.output) == ("completed", "in-3-18")
    assert o.shape() == [
        ("0", "context", "child"),
        ("0.0", "step", "inner"),
        ("0.1", "sleep", "inner-wait"),
        ("1", "step", "outer"),
        ("2", "sleep", "outer-wait"),
    ]
    assert [set(ops) for _, ops in o.rounds] == [{"0.0", "0.1"}, {"0", "0.0", "0.1", "1", "2"}]
    assert o.ran("inner") == 1 and o.ran("outer") == 1
