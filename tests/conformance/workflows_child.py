"""Workflows of the conformance tier's child context suite (requirements 3-x):
`ctx.run_in_child_context`. The result of 3-11 is too large to record, and
3-12's step ends the worker process the first time it runs.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from pydantic import PlainSerializer

from worker import NO_RETRY, ChildContextError, RetryPolicy, workflow

from .workflows import LARGE, PARK, PARKING_RETRY, crash_once, echo, fail, flaky, ran


async def child_echo(ctx, value: Any) -> Any:
    return await ctx.step("echo", echo, ctx.workflow_id, "echo", value)


@workflow("child-3-1")
async def child_basic(ctx, input: str) -> str:
    return await ctx.run_in_child_context("child", child_echo, input)


@workflow("child-3-2")
async def child_named(ctx, input: dict[str, str]) -> str:
    return await ctx.run_in_child_context(input["name"], child_echo, input["value"])


@workflow("child-3-3")
async def child_two_steps(ctx, input: str) -> str:
    async def body(c: Any) -> str:
        first = await c.step("first", echo, c.workflow_id, "first", input)
        return await c.step("second", echo, c.workflow_id, "second", first)

    return await ctx.run_in_child_context("child", body)


async def child_failing(ctx) -> None:
    await ctx.step("failing", fail, ctx.workflow_id, "failing", retry=NO_RETRY)


@workflow("child-3-4")
async def child_error(ctx) -> None:
    await ctx.run_in_child_context("child", child_failing)


@workflow("child-3-5")
async def child_error_caught(ctx, input: str) -> str:
    with contextlib.suppress(ChildContextError):
        await ctx.run_in_child_context("child", child_failing)
    return await ctx.step("recover", echo, ctx.workflow_id, "recover", input)


@workflow("child-3-6")
async def child_nested(ctx, input: str) -> str:
    async def outer(c: Any) -> str:
        await c.step("outer-step", echo, c.workflow_id, "outer-step", input)
        return await c.run_in_child_context("inner", child_echo, input)

    return await ctx.run_in_child_context("outer", outer)


@workflow("child-3-7")
async def child_step_retry(ctx, input: str) -> str:
    async def body(c: Any) -> str:
        policy = RetryPolicy(max_attempts=3, **PARKING_RETRY)
        return await c.step("flaky", flaky, c.workflow_id, "flaky", 1, input, retry=policy)

    return await ctx.run_in_child_context("child", body)


@workflow("child-3-8")
async def child_step_retry_exhausted(ctx) -> None:
    async def body(c: Any) -> None:
        policy = RetryPolicy(max_attempts=2, **PARKING_RETRY)
        await c.step("always_fail", fail, c.workflow_id, "always_fail", retry=policy)

    await ctx.run_in_child_context("child", body)


@workflow("child-3-9")
async def child_then_wait(ctx, input: str) -> str:
    async def body(c: Any) -> str:
        ran(c.workflow_id, "body")
        return await child_echo(c, input)

    value = await ctx.run_in_child_context("child", body)
    await ctx.sleep("wait", PARK)
    return value


@workflow("child-3-10")
async def child_step_and_wait(ctx, input: str) -> str:
    async def body(c: Any) -> str:
        value = await child_echo(c, input)
        await c.sleep("wait", PARK)
        return value

    return await ctx.run_in_child_context("child", body)


@workflow("child-3-11")
async def child_large_result(ctx, input: str) -> dict[str, Any]:
    async def body(c: Any) -> str:
        ran(c.workflow_id, "body")
        small = await child_echo(c, input)
        return small * (LARGE // len(small) + 1)

    big = await ctx.run_in_child_context("child", body)
    await ctx.sleep("wait", PARK)
    return {"size": len(big), "prefix": big[: len(input)]}


@workflow("child-3-12")
async def child_interrupted(ctx, input: dict[str, str]) -> str:
    async def body(c: Any) -> str:
        return await c.step(
            "crashy", crash_once, c.workflow_id, "crashy", input["marker"], input["value"]
        )

    return await ctx.run_in_child_context("child", body)


@workflow("child-3-13")
async def child_wait_only(ctx, input: str) -> str:
    async def body(c: Any) -> str:
        await c.sleep("wait", PARK)
        return input

    value = await ctx.run_in_child_context("child", body)
    return await ctx.step("outer", echo, ctx.workflow_id, "outer", value)


async def upper_child(ctx, value: str) -> Annotated[str, PlainSerializer(str.upper)]:
    return await child_echo(ctx, value)


@workflow("child-3-14")
async def child_serdes(ctx, input: str) -> str:
    return await ctx.run_in_child_context("child", upper_child, input)


@workflow("child-3-15")
async def child_raises_directly(ctx) -> None:
    async def body(c: Any) -> None:
        raise ValueError("thrown in the child body")

    await ctx.run_in_child_context("child", body)


@workflow("child-3-16")
async def child_null(ctx) -> Any:
    async def body(c: Any) -> None:
        return None

    return await ctx.run_in_child_context("child", body)


@workflow("child-3-17")
async def child_logger_only(ctx, input: str) -> str:
    async def body(c: Any) -> str:
        ran(c.workflow_id, "body")
        c.logger.info("child body ran for %s", input)
        return input

    value = await ctx.run_in_child_context("child", body)
    await ctx.sleep("wait", PARK)
    return value


@workflow("child-3-18")
async def child_mixed(ctx, input: str) -> str:
    async def body(c: Any) -> str:
        value = await c.step("inner", echo, c.workflow_id, "inner", input)
        await c.sleep("inner-wait", PARK)
        return value

    value = await ctx.run_in_child_context("child", body)
    value = await ctx.step("outer", echo, ctx.workflow_id, "outer", value)
    await ctx.sleep("outer-wait", PARK)
    return value


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
