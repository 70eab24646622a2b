"""Workflows of the conformance tier's callback suites: `ctx.create_callback`
(requirements 4-x) and `ctx.wait_for_callback` (7-x).

The outside system is the tier's driver: it completes, fails or heartbeats a
callback by name through the HTTP API (`SCENARIOS` actions in the suite
modules). Timeouts last an hour (`PARK`) rather than the requirements' few
seconds, so that a run always parks before its timeout can pass; a wait that
must outlast a timeout lasts two.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from worker import CallbackFailedError, CallbackTimeoutError, RetryPolicy, workflow

from .workflows import PARK, echo, fail, ran


def submit(rid: str, callback_id: str) -> str:
    """A submitter: hands the callback id to the outside system (here: nobody)."""
    ran(rid, "submit")
    return callback_id[:4]


def _error(e: Exception) -> dict[str, Any]:
    if isinstance(e, CallbackFailedError):
        return {"failed": [e.error_type, e.error_message]}
    assert isinstance(e, CallbackTimeoutError)
    return {"timeout": e.kind}


# --- create_callback (4-x) ----------------------------------------------------------------


@workflow("callback-4-1")
async def callback_basic(ctx, input: str) -> Any:
    cb = await ctx.create_callback(input)
    return await cb.result()


@workflow("callback-4-2")
async def callback_named(ctx) -> Any:
    cb = await ctx.create_callback("approval")
    return await cb.result()


@workflow("callback-4-3")
async def callback_timeout(ctx, input: str) -> Any:
    cb = await ctx.create_callback(input, timeout=PARK)
    return await cb.result()


@workflow("callback-4-4")
async def callback_heartbeat_timeout(ctx, input: str) -> Any:
    cb = await ctx.create_callback(input, heartbeat_timeout=PARK)
    return await cb.result()


@workflow("callback-4-5")
async def callback_heartbeat_then_success(ctx, input: str) -> Any:
    cb = await ctx.create_callback(input, heartbeat_timeout=PARK)
    return await cb.result()


@workflow("callback-4-7")
async def callback_step_then_result(ctx, input: dict[str, Any]) -> Any:
    cb = await ctx.create_callback(input["name"], timeout=input.get("timeout"))
    await ctx.step("step", echo, ctx.workflow_id, "step", "done")
    return await cb.result()


@workflow("callback-4-9")
async def callback_wait_then_result(ctx, input: dict[str, Any]) -> Any:
    timeout = PARK if input.get("timeout") else None
    cb = await ctx.create_callback(input["name"], timeout=timeout)
    await ctx.sleep("wait", 2 * PARK)  # outlasts the callback's timeout
    return await cb.result()


@workflow("callback-4-12")
async def callback_result_then_wait(ctx, input: dict[str, Any]) -> Any:
    timeout = PARK if input.get("timeout") else None
    cb = await ctx.create_callback(input["name"], timeout=timeout)
    try:
        value: Any = {"ok": await cb.result()}
    except (CallbackFailedError, CallbackTimeoutError) as e:
        value = _error(e)
    await ctx.sleep("wait", PARK)
    return value


@workflow("callback-4-17")
async def callback_two_sequential(ctx, input: list[str]) -> Any:
    a = await (await ctx.create_callback(input[0])).result()
    b = await (await ctx.create_callback(input[1])).result()
    return [a, b]


@workflow("callback-4-18")
async def callback_two_in_order(ctx, input: list[str]) -> Any:
    a = await ctx.create_callback(input[0])
    b = await ctx.create_callback(input[1])
    first = await a.result()
    return [first, await b.result()]


@workflow("callback-4-19")
async def callback_two_in_reverse(ctx, input: list[str]) -> Any:
    a = await ctx.create_callback(input[0])
    b = await ctx.create_callback(input[1])
    second = await b.result()
    return [await a.result(), second]


class Stamped(BaseModel):
    """4-15's result type: an object with a timestamp."""

    label: str
    at: datetime


@workflow("callback-4-15")
async def callback_model_result(ctx, input: str) -> Any:
    cb = await ctx.create_callback(input, result_type=Stamped)
    got = await cb.result()
    assert isinstance(got, Stamped)
    return {"label": got.label, "at": got.at.isoformat(), "year": got.at.year}


@workflow("callback-4-16")
async def callback_number_result(ctx, input: str) -> Any:
    cb = await ctx.create_callback(input, result_type=Decimal)
    got = await cb.result()
    try:  # a result that does not fit the type: a ValueError, the same on replay
        await (await ctx.create_callback(f"{input}-bad", result_type=Decimal)).result()
        bad = "accepted"
    except ValueError as e:
        bad = type(e).__name__
    return {"type": type(got).__name__, "value": str(got * 2), "bad": bad}


# --- wait_for_callback (7-x) --------------------------------------------------------------


@workflow("wfc-basic")
async def wfc_basic(ctx, input: str) -> Any:
    """wait_for_callback named after the input: 7-1, 7-4, 7-11, 7-15."""
    return await ctx.wait_for_callback(input, lambda cid: submit(ctx.workflow_id, cid))


@workflow("wfc-7-2")
async def wfc_named(ctx) -> Any:
    return await ctx.wait_for_callback("approval", lambda cid: submit(ctx.workflow_id, cid))


@workflow("wfc-timeouts")
async def wfc_timeouts(ctx, input: dict[str, Any]) -> Any:
    """With a timeout or a heartbeat timeout, caught or not: 7-5, 7-12, 7-13, 7-14."""
    try:
        return await ctx.wait_for_callback(
            input["name"],
            lambda cid: submit(ctx.workflow_id, cid),
            timeout=PARK if input.get("timeout") else None,
            heartbeat_timeout=PARK if input.get("heartbeat") else None,
        )
    except CallbackTimeoutError:
        if input.get("catch"):
            return "timed-out-handled"
        raise


@workflow("wfc-7-6")
async def wfc_failure_caught(ctx, input: str) -> Any:
    try:
        return await ctx.wait_for_callback(input, lambda cid: submit(ctx.workflow_id, cid))
    except CallbackFailedError:
        return "recovered"


_SUBMIT_RETRY = RetryPolicy(
    max_attempts=2, initial_interval=PARK, max_interval=PARK, backoff=1.0, jitter=0.0
)


@workflow("wfc-7-7")
async def wfc_submitter_exhausted(ctx, input: str) -> Any:
    return await ctx.wait_for_callback(
        input, lambda cid: fail(ctx.workflow_id, "submit"), retry=_SUBMIT_RETRY
    )


@workflow("wfc-7-8")
async def wfc_in_child_context(ctx, input: str) -> Any:
    async def body(c: Any) -> Any:
        return await c.wait_for_callback(input, lambda cid: submit(c.workflow_id, cid))

    return await ctx.run_in_child_context("wrapper", body)


@workflow("wfc-7-9")
async def wfc_two_sequential(ctx) -> Any:
    await ctx.wait_for_callback("first", lambda cid: submit(ctx.workflow_id, cid))
    return await ctx.wait_for_callback("second", lambda cid: submit(ctx.workflow_id, cid))


@workflow("wfc-7-10")
async def wfc_after_wait_and_step(ctx, input: str) -> Any:
    await ctx.sleep("wait", PARK)
    await ctx.step("fixed", echo, ctx.workflow_id, "fixed", {"fixed": True})
    return await ctx.wait_for_callback(input, lambda cid: submit(ctx.workflow_id, cid))


@workflow("wfc-7-11")
async def wfc_structured(ctx, input: str) -> Any:
    value = await ctx.wait_for_callback(input, lambda cid: submit(ctx.workflow_id, cid))
    return value["status"]


@workflow("wfc-7-3")
async def wfc_anonymous(ctx) -> Any:
    """No name and an anonymous submitter: the default name is the operation's kind."""
    return await ctx.wait_for_callback(lambda cid: submit(ctx.workflow_id, cid))


@workflow("wfc-7-3-def")
async def wfc_unnamed(ctx) -> Any:
    """No name: the default is the submitter's qualified name."""

    def hand_over(cid: str) -> None:
        submit(ctx.workflow_id, cid)

    return await ctx.wait_for_callback(hand_over)


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
