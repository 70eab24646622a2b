"""Workflows of the conformance tier's wait_for_condition suite (requirements 6-x).

A check counts its real executions (`check`), so a test can tell that a replay
returned the recorded states. Strategies wait an hour between checks (`PARK`)
so that each wait parks the run; 6-5 keeps the requirement's fixed 2 s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from worker import NO_RETRY, ChildContextError, backoff_until, workflow

from .workflows import PARK, echo, ran


def until(threshold: int):  # type: ignore[no-untyped-def]
    """Go on (an hour's wait) while the state is below `threshold`."""

    def strategy(state: int, attempt: int) -> timedelta | None:
        return None if state >= threshold else PARK

    return strategy


def _increment(rid: str):  # type: ignore[no-untyped-def]
    def check(state: int) -> int:
        ran(rid, "check")
        return state + 1

    return check


@workflow("condition-6-1")
async def condition_basic(ctx, input: int) -> int:
    return await ctx.wait_for_condition(
        "poll", _increment(ctx.workflow_id), initial_state=0, wait_strategy=until(input)
    )


@workflow("condition-6-2")
async def condition_already_met(ctx, input: int) -> int:
    def check(state: int) -> int:
        ran(ctx.workflow_id, "check")
        return state

    return await ctx.wait_for_condition(
        "poll", check, initial_state=input, wait_strategy=until(input)
    )


@workflow("condition-6-3")
async def condition_named(ctx, input: int) -> int:
    return await ctx.wait_for_condition(
        "poll-status", _increment(ctx.workflow_id), initial_state=0, wait_strategy=until(input)
    )


@workflow("condition-6-4")
async def condition_initial_state(ctx, input: int) -> int:
    return await ctx.wait_for_condition(
        "poll", _increment(ctx.workflow_id), initial_state=5, wait_strategy=until(input)
    )


@workflow("condition-6-5")
async def condition_fixed_delay(ctx, input: int) -> int:
    strategy = backoff_until(lambda s: s >= input, initial=2, factor=1.0, max_delay=2)
    return await ctx.wait_for_condition(
        "poll", _increment(ctx.workflow_id), initial_state=0, wait_strategy=strategy
    )


@workflow("condition-6-6")
async def condition_attempts_exhausted(ctx) -> int:
    strategy = backoff_until(
        lambda s: False, initial=PARK, factor=1.0, max_delay=PARK, max_attempts=3
    )
    return await ctx.wait_for_condition(
        "poll", _increment(ctx.workflow_id), initial_state=0, wait_strategy=strategy
    )


def _raising(rid: str):  # type: ignore[no-untyped-def]
    def check(state: Any) -> Any:
        ran(rid, "check")
        raise RuntimeError("check failed")

    return check


@workflow("condition-6-7")
async def condition_check_raises(ctx) -> Any:
    return await ctx.wait_for_condition(
        "poll", _raising(ctx.workflow_id), wait_strategy=until(1), retry=NO_RETRY
    )


@workflow("condition-6-7-default")
async def condition_check_raises_default_retry(ctx) -> Any:
    """6-7 under the engine's default retry (DEFAULT_RETRY): the check, a step,
    runs three times (1 s and 2 s waited in the worker) before it fails."""
    return await ctx.wait_for_condition("poll", _raising(ctx.workflow_id), wait_strategy=until(1))


@workflow("condition-6-8")
async def condition_check_raises_caught(ctx) -> Any:
    try:
        return await ctx.wait_for_condition(
            "poll", _raising(ctx.workflow_id), wait_strategy=until(1), retry=NO_RETRY
        )
    except ChildContextError:
        return "recovered"


@workflow("condition-6-9")
async def condition_object_state(ctx) -> dict[str, Any]:
    def check(state: dict[str, Any]) -> dict[str, Any]:
        ran(ctx.workflow_id, "check")
        attempts = state["attempts"] + 1
        return {"status": "DONE" if attempts >= 2 else "PENDING", "attempts": attempts}

    def strategy(state: dict[str, Any], attempt: int) -> timedelta | None:
        return PARK if state["status"] == "PENDING" else None

    initial = {"status": "PENDING", "attempts": 0}
    return await ctx.wait_for_condition(
        "poll", check, initial_state=initial, wait_strategy=strategy
    )


@workflow("condition-6-10")
async def condition_null(ctx) -> Any:
    def check(state: Any) -> None:
        ran(ctx.workflow_id, "check")

    return await ctx.wait_for_condition("poll", check, wait_strategy=lambda state, attempt: None)


def _unwrap(value: Any) -> Any:
    return value.removeprefix("enc:") if isinstance(value, str) else value


Encoded = Annotated[str, PlainSerializer(lambda v: f"enc:{v}"), BeforeValidator(_unwrap)]


@workflow("condition-6-11")
async def condition_state_serdes(ctx) -> str:
    def check(state: str) -> Encoded:
        ran(ctx.workflow_id, "check")
        return state + "x"

    def strategy(state: str, attempt: int) -> timedelta | None:
        return None if len(state) >= 2 else PARK

    return await ctx.wait_for_condition("poll", check, initial_state="", wait_strategy=strategy)


@workflow("condition-6-12")
async def condition_then_step(ctx, input: int) -> int:
    state = await ctx.wait_for_condition(
        "poll", _increment(ctx.workflow_id), initial_state=0, wait_strategy=until(input)
    )
    return await ctx.step("times-ten", echo, ctx.workflow_id, "times-ten", state * 10)


@workflow("condition-6-13")
async def condition_twice(ctx) -> int:
    first = await ctx.wait_for_condition(
        "first", _increment(ctx.workflow_id), initial_state=0, wait_strategy=until(2)
    )
    return await ctx.wait_for_condition(
        "second", _increment(ctx.workflow_id), initial_state=first, wait_strategy=until(4)
    )


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
