"""`ctx.wait_for_condition`: poll with durable waits until a condition holds.

The operation takes one id and runs in its own scope under it (as
`run_in_child_context` does): check attempt n is the step `<name>-<n>`, and the
wait after it the durable sleep `<name>-wait-<n>`, so the attempts' ids nest
under the operation ("4.0", "4.1", ...) and a replay finds each one. The final
state is recorded at the operation's id (kind "condition"); once recorded, a
replay returns it without running anything. An error (a check that failed after
its retries, a strategy that gave up) is recorded and raised as
ChildContextError, on replay too.

The strategy runs in workflow code and must be deterministic: a function of the
state and the attempt number (`backoff_until` is one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from orchestrator.errors import ConditionNotMetError
from orchestrator.model import STEP_NAME_RE, StepKind

from .. import _core
from .._outcomes import _result_adapter
from .._retry import RetryPolicy
from .child import decode, outcome_record, run_scoped

WaitStrategy = Callable[[Any, int], "timedelta | None"]


async def wait_for_condition(
    ctx: Any,
    name: str,
    check: Callable[[Any], Any],
    *,
    initial_state: Any,
    wait_strategy: WaitStrategy,
    retry: RetryPolicy | None = None,
) -> Any:
    if not isinstance(name, str) or not STEP_NAME_RE.fullmatch(name) or len(name) > 180:
        raise ValueError("a condition name is 1 to 180 printable characters")
    if not callable(check) or not callable(wait_strategy):
        raise TypeError("wait_for_condition needs check(state) and wait_strategy(state, attempt)")
    s, op_id, rec = await _core.enter("wait_for_condition")
    adapter = _result_adapter(check)
    if rec is not None:
        _core.check(s, rec, StepKind.CONDITION, name)
        if rec.resolved and not rec.replay_children:
            return decode(rec, adapter)
    started = s.clock.now_ms()

    async def poll(child: Any) -> Any:
        state, attempt = initial_state, 0
        while True:
            attempt += 1
            state = await child.step(f"{name}-{attempt}", check, state, retry=retry)
            delay = wait_strategy(state, attempt)
            if delay is None:
                return state
            await child.sleep(f"{name}-wait-{attempt}", delay)

    ok, value = await run_scoped(ctx, op_id, poll, ())
    done = outcome_record(s, op_id, name, StepKind.CONDITION, ok, value, adapter, started)
    if rec is not None and rec.resolved:  # replay_children: the record stays as it is
        return decode(done, adapter, value)
    return decode(await _core.record(s, done), adapter, value)


def backoff_until(
    predicate: Callable[[Any], bool],
    *,
    initial: timedelta | float = timedelta(seconds=5),
    factor: float = 2.0,
    max_delay: timedelta | float = timedelta(minutes=5),
    max_attempts: int | None = None,
) -> WaitStrategy:
    """A wait strategy: done when `predicate(state)` holds; otherwise wait
    `initial * factor**(attempt-1)`, capped at `max_delay`, before the next check.
    After `max_attempts` checks that did not hold it raises ConditionNotMetError.
    No jitter: the delays are part of the recorded history and must replay."""
    first = initial if isinstance(initial, timedelta) else timedelta(seconds=initial)
    cap = max_delay if isinstance(max_delay, timedelta) else timedelta(seconds=max_delay)
    if first <= timedelta(0) or cap < first or factor < 1:
        raise ValueError("backoff_until needs 0 < initial <= max_delay and factor >= 1")
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")

    def strategy(state: Any, attempt: int) -> timedelta | None:
        if predicate(state):
            return None
        if max_attempts is not None and attempt >= max_attempts:
            raise ConditionNotMetError(attempt)
        return min(first * factor ** (attempt - 1), cap)

    return strategy
