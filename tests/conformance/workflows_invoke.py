"""Workflows of the conformance tier's invoke suite (requirements 5-x).

`ctx.invoke` runs another workflow as a child run: the targets are workflows
here too (`conf-echo` returns its input, `conf-fail` raises, `conf-size`
returns the size of what it got). A target counts its real executions under
its own run id, so a test can tell that a replay of the parent did not start
the child again.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, field_serializer

from worker import ChildWorkflowError, workflow

from .workflows import PARK, echo, ran

# --- targets ------------------------------------------------------------------------------


@workflow("conf-echo")
async def target_echo(ctx, input: Any = None) -> Any:
    ran(ctx.workflow_id, "target")
    return input


@workflow("conf-fail")
async def target_fail(ctx, input: Any = None) -> Any:
    ran(ctx.workflow_id, "target")
    raise RuntimeError("target failed")


@workflow("conf-size")
async def target_size(ctx, input: Any = None) -> dict[str, int]:
    ran(ctx.workflow_id, "target")
    return {"size": len(input["data"])}


# --- the suite ----------------------------------------------------------------------------


@workflow("invoke-5-1")
async def invoke_basic(ctx, input: Any = None) -> Any:
    return await ctx.invoke("invoke", "conf-echo", input)


@workflow("invoke-5-2")
async def invoke_named(ctx, input: dict[str, Any]) -> Any:
    return await ctx.invoke(input["name"], "conf-echo", input["payload"])


@workflow("invoke-5-5")
async def invoke_fails(ctx) -> Any:
    return await ctx.invoke("invoke", "conf-fail")


@workflow("invoke-5-6")
async def invoke_fails_caught(ctx) -> Any:
    try:
        return await ctx.invoke("invoke", "conf-fail")
    except ChildWorkflowError as e:
        return {"fallback": True, "status": e.status, "errorType": e.error_type}


LARGE_INPUT = 120 * 1024  # a child's input may hold up to 128 KiB


@workflow("invoke-5-7")
async def invoke_large(ctx) -> Any:
    return await ctx.invoke("invoke", "conf-size", {"data": "x" * LARGE_INPUT})


@workflow("invoke-5-9")
async def invoke_then_wait(ctx) -> Any:
    value = await ctx.invoke("invoke", "conf-echo", "cached")
    await ctx.sleep("wait", PARK)
    return value


@workflow("invoke-5-10")
async def invoke_fails_then_wait(ctx) -> Any:
    caught = []
    try:
        await ctx.invoke("invoke", "conf-fail")
    except ChildWorkflowError as e:
        caught.append(e.status)
    await ctx.sleep("wait", PARK)
    return {"caught": caught}


@workflow("invoke-5-11")
async def step_then_invoke(ctx) -> Any:
    value = await ctx.step("step", echo, ctx.workflow_id, "step", "from-step")
    return await ctx.invoke("invoke", "conf-echo", value)


@workflow("invoke-5-12")
async def invoke_then_step(ctx) -> Any:
    value = await ctx.invoke("invoke", "conf-echo", "from-invoke")
    return await ctx.step("step", echo, ctx.workflow_id, "step", f"{value}-processed")


@workflow("invoke-5-13")
async def invoke_in_child_context(ctx) -> Any:
    async def body(c: Any) -> Any:
        return await c.invoke("invoke", "conf-echo", "in-context")

    return await ctx.run_in_child_context("child", body)


@workflow("invoke-5-14")
async def invoke_twice(ctx) -> Any:
    first = await ctx.invoke("first", "conf-echo", "one")
    second = await ctx.invoke("second", "conf-echo", "two")
    return [first, second]


class Shouting(BaseModel):
    """The invoke payload's serializer (equivalent of a payload serdes)."""

    data: str

    @field_serializer("data")
    def _upper(self, value: str) -> str:
        return value.upper()


@workflow("invoke-5-15")
async def invoke_payload_serdes(ctx, input: dict[str, str]) -> Any:
    return await ctx.invoke("invoke", "conf-echo", Shouting(data=input["data"]))


@workflow("invoke-5-16")
async def invoke_result_serdes(ctx, input: str) -> Any:
    shouted = Annotated[str, AfterValidator(str.upper)]
    return await ctx.invoke("invoke", "conf-echo", input, result_type=shouted)


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
