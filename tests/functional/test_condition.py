"""wait_for_condition: checks as steps, durable waits between them, ids nested
under the operation, the final state recorded; backoff_until's delays."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_for
from worker import ChildContextError, ConditionNotMetError, backoff_until, workflow

MINUTE = 60


def _check(state: dict) -> dict:
    return {"n": state["n"] + 1}


@workflow("poll-ready")
async def poll_ready(ctx, input: dict) -> Any:
    strategy = backoff_until(
        lambda s: s["n"] >= input["ready_at"],
        initial=timedelta(minutes=20),
        factor=2.0,
        max_delay=timedelta(hours=1),
        max_attempts=input.get("max_attempts"),
    )
    try:
        state = await ctx.wait_for_condition(
            "ready", _check, initial_state={"n": 0}, wait_strategy=strategy
        )
    except ChildContextError as e:
        return {"gave_up": e.error_type}
    return await ctx.step("after", lambda: state)


def _run_to_the_end(stack, run_id: str) -> Any:
    """Skip the clock an hour each time the run sleeps, until it ends."""
    skips = 0
    while True:
        run = wait_for(
            lambda: (r := stack.store.get(run_id)).status.value in ("sleeping", "completed") and r
        )
        if run.status.value == "completed":
            return json.loads(run.output), skips
        stack.clock.advance(60 * MINUTE)
        skips += 1
        wait_for(lambda before=run.wake_at: stack.store.get(run_id).wake_at != before)


def test_wait_for_condition_polls_with_backoff_until_the_state_is_ready(stack) -> None:
    with BackgroundWorker([poll_ready], stack.settings, clock=stack.clock):
        run, _ = stack.service.start("poll-ready", {"ready_at": 4})
        gives_up, _ = stack.service.start("poll-ready", {"ready_at": 10, "max_attempts": 2})
        output, skips = _run_to_the_end(stack, run.id)
        assert output == {"n": 4} and skips == 3
        # The other run ran out of attempts after two checks (during the first skip).
        assert _run_to_the_end(stack, gives_up.id)[0] == {"gave_up": "ConditionNotMetError"}
    assert len([s for s in stack.store.steps(gives_up.id) if s.kind == "step"]) == 2
    steps = {s.op_id: s for s in stack.store.steps(run.id)}
    assert steps["0"].kind == "condition" and json.loads(steps["0"].result) == {"n": 4}
    checks = [s for s in steps.values() if s.kind == "step" and s.name.startswith("ready-")]
    waits = [s for s in steps.values() if s.kind == "sleep"]
    assert [c.name for c in checks] == ["ready-1", "ready-2", "ready-3", "ready-4"]
    assert all(s.parent_id == "0" for s in checks + waits)  # nested under the operation
    delays = [(w.wake_at - w.started_at) // 1000 for w in waits]
    assert delays == [20 * MINUTE, 40 * MINUTE, 60 * MINUTE]  # doubled, capped at an hour
    assert steps["1"].name == "after"


def test_backoff_until_delays() -> None:
    strategy = backoff_until(bool, initial=1, factor=3, max_delay=20, max_attempts=5)
    assert [strategy(0, a) for a in (1, 2, 3, 4)] == [
        timedelta(seconds=1),
        timedelta(seconds=3),
        timedelta(seconds=9),
        timedelta(seconds=20),
    ]
    assert strategy(1, 1) is None
    with pytest.raises(ConditionNotMetError):
        strategy(0, 5)
    with pytest.raises(ValueError):
        backoff_until(bool, initial=10, max_delay=5)
