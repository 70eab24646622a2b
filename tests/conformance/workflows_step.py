"""Workflows of the conformance tier's step suite (requirements 1-x): `ctx.step`
results, replay, retries. The retry delays of 1-14 (2 s, then 6 s) are the
requirement's; the other retries wait an hour (`PARKING_RETRY`) and park the run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import PlainSerializer

from worker import AT_MOST_ONCE_PER_RETRY, NO_RETRY, RetryPolicy, StepFailedError, workflow

from .workflows import PARK, PARKING_RETRY, crash_once, echo, fail, flaky, greet, ran

# --- step functions -----------------------------------------------------------------------


class TransientError(Exception):
    pass


class PermanentError(Exception):
    pass


def nothing(rid: str) -> None:
    ran(rid, "nothing")


def build_response(rid: str, event: dict[str, Any]) -> dict[str, Any]:
    ran(rid, "build")
    return {"user": {"name": event["name"], "tags": event["tags"]}, "count": len(event["tags"])}


def uppercase_serialized(rid: str, value: str) -> Annotated[str, PlainSerializer(str.upper)]:
    """The engine's per-step serdes: the return annotation's serializer writes the record."""
    ran(rid, "upper")
    return value


# --- the suite ----------------------------------------------------------------------------


@workflow("step-1-1")
async def step_basic(ctx, input: str) -> str:
    return await ctx.step("greet", greet, ctx.workflow_id, input)


@workflow("step-1-2")
async def step_named(ctx, input: str) -> str:
    return await ctx.step("custom_step_name", greet, ctx.workflow_id, input)


@workflow("step-1-3")
async def step_sequential(ctx) -> str:
    first = await ctx.step("step_one", echo, ctx.workflow_id, "one", "first")
    return await ctx.step("step_two", echo, ctx.workflow_id, "two", f"{first}_second")


@workflow("step-1-4")
async def step_complex(ctx, input: dict[str, Any]) -> Any:
    return await ctx.step("build", build_response, ctx.workflow_id, input)


@workflow("step-1-5")
async def step_null(ctx) -> Any:
    return await ctx.step("nothing", nothing, ctx.workflow_id)


@workflow("step-1-6")
async def step_serdes(ctx, input: str) -> str:
    return await ctx.step("upper", uppercase_serialized, ctx.workflow_id, input)


@workflow("step-1-8")
async def step_then_wait(ctx) -> str:
    value = await ctx.step("compute", echo, ctx.workflow_id, "compute", "computed")
    await ctx.sleep("wait", PARK)
    return value


@workflow("step-1-9")
async def step_replay_skips(ctx) -> str:
    value = await ctx.step("cached", echo, ctx.workflow_id, "cached", "cached_value")
    await ctx.sleep("wait", PARK)
    return value


@workflow("step-1-10")
async def step_replay_rethrows(ctx) -> dict[str, Any]:
    caught = []
    try:
        await ctx.step("failing", fail, ctx.workflow_id, "failing", retry=NO_RETRY)
    except StepFailedError as e:
        caught.append(e.error_type)
    await ctx.sleep("wait", PARK)
    return {"caught": caught}


@workflow("step-1-11")
async def step_retry_then_succeed(ctx) -> str:
    policy = RetryPolicy(max_attempts=3, **PARKING_RETRY)
    return await ctx.step(
        "unreliable", flaky, ctx.workflow_id, "unreliable", 1, "Operation succeeded", retry=policy
    )


@workflow("step-1-12")
async def step_retry_exhausted(ctx) -> None:
    policy = RetryPolicy(max_attempts=4, **PARKING_RETRY)
    await ctx.step("always_fail", fail, ctx.workflow_id, "always_fail", retry=policy)


@workflow("step-1-13")
async def step_default_retry(ctx) -> str:
    return await ctx.step("unreliable", flaky, ctx.workflow_id, "unreliable", 2, "third time")


@workflow("step-1-14")
async def step_custom_backoff(ctx) -> str:
    policy = RetryPolicy(
        max_attempts=5, initial_interval=timedelta(seconds=2), backoff=3.0, jitter=0.0
    )
    return await ctx.step("backoff", flaky, ctx.workflow_id, "backoff", 2, "ok", retry=policy)


@workflow("step-1-15")
async def step_retry_transient(ctx) -> str:
    policy = RetryPolicy(max_attempts=3, non_retryable=[PermanentError], **PARKING_RETRY)
    return await ctx.step(
        "transient", flaky, ctx.workflow_id, "transient", 1, "ok", TransientError, retry=policy
    )


@workflow("step-1-16")
async def step_transient_not_retried(ctx) -> str:
    policy = RetryPolicy(max_attempts=3, non_retryable=[TransientError], **PARKING_RETRY)
    return await ctx.step(
        "transient", flaky, ctx.workflow_id, "transient", 1, "ok", TransientError, retry=policy
    )


@workflow("step-1-19")
async def step_fails(ctx) -> None:
    await ctx.step("failing", fail, ctx.workflow_id, "failing", retry=NO_RETRY)


@workflow("step-1-20")
async def step_error_caught(ctx) -> str:
    try:
        value = await ctx.step("failing", fail, ctx.workflow_id, "failing", retry=NO_RETRY)
    except StepFailedError:
        value = "fallback_result"
    return await ctx.step("after", echo, ctx.workflow_id, "after", value)


@workflow("step-1-13-lambda")
async def step_lambda_default_retry(ctx) -> str:
    """1-13 under the requirement's own strategy: 6 attempts, 5 s first delay
    (backoff 2; no jitter, where Lambda's is full jitter)."""
    policy = RetryPolicy(
        max_attempts=6, initial_interval=timedelta(seconds=5), backoff=2.0, jitter=0.0
    )
    return await ctx.step(
        "unreliable", flaky, ctx.workflow_id, "unreliable", 2, "third time", retry=policy
    )


@workflow("step-1-17")
async def step_at_most_once_no_retry(ctx, marker: str) -> str:
    return await ctx.step(
        "crashing",
        crash_once,
        ctx.workflow_id,
        "crashing",
        marker,
        "not run again",
        semantics=AT_MOST_ONCE_PER_RETRY,
        retry=NO_RETRY,
    )


@workflow("step-1-18")
async def step_at_most_once_retried(ctx, marker: str) -> str:
    return await ctx.step(
        "crashing",
        crash_once,
        ctx.workflow_id,
        "crashing",
        marker,
        "succeeded on second attempt",
        semantics=AT_MOST_ONCE_PER_RETRY,
        retry=RetryPolicy(max_attempts=3, **PARKING_RETRY),
    )


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
