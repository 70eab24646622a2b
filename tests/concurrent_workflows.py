"""Workflows that branch: asyncio composition, parallel, map and child contexts.

Loaded with tests/workflows.py (its ALL list), so worker subprocesses serve
them too. Step functions log each real execution (tests/workflows.py `_log`)."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from worker import NO_RETRY, CompletionConfig, RetryPolicy, workflow

from .workflows import _log, record


def timed(run_id: str, name: str, seconds: float) -> str:
    _log(f"{run_id}:{name}:start")
    time.sleep(seconds)
    _log(f"{run_id}:{name}")
    return name


class GatherInput(BaseModel):
    seed: int = 0
    branches: int = 3
    steps: int = 4
    max_delay: float = 0.05
    sleep: float = 1.0
    kind: str = "gather"  # "gather" | "taskgroup" | "create_task"


async def _branch(ctx: Any, tag: str, steps: int, seed: int, max_delay: float) -> str:
    out = []
    for i in range(steps):
        delay = random.Random(f"{seed}-{tag}-{i}").uniform(0, max_delay)
        out.append(await ctx.step(f"{tag}-{i}", timed, ctx.workflow_id, f"{tag}-{i}", delay))
    return "+".join(out)


@workflow("gather-multi")
async def gather_multi(ctx, input: GatherInput) -> list[str]:
    tags = [chr(ord("A") + b) for b in range(input.branches)]

    def branch(tag: str) -> Any:
        return _branch(ctx, tag, input.steps, input.seed, input.max_delay)

    if input.kind == "taskgroup":
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(branch(t)) for t in tags]
        results = [t.result() for t in tasks]
    elif input.kind == "create_task":
        tasks = [asyncio.create_task(branch(t)) for t in tags]
        results = [await t for t in tasks]
    else:
        results = list(await asyncio.gather(*(branch(t) for t in tags)))
    await ctx.sleep("after", timedelta(seconds=input.sleep))
    return results


@workflow("signal-and-sleep")
async def signal_and_sleep(ctx, input: dict[str, Any]) -> dict[str, Any]:
    async def waits() -> Any:
        got = await ctx.wait_for_signal("wait-go", "go")
        await ctx.step("after-signal", record, ctx.workflow_id, "after-signal")
        return got

    async def sleeps() -> str:
        await ctx.sleep("nap", timedelta(seconds=input.get("sleep", 60)))
        return await ctx.step("after-sleep", record, ctx.workflow_id, "after-sleep", "slept")

    got, slept = await asyncio.gather(waits(), sleeps())
    return {"signal": got, "sleep": slept}


class MapInput(BaseModel):
    items: int = 10
    max_concurrency: int | None = 3
    seconds: float = 0.05
    nested: bool = False


def interval(run_id: str, name: str, seconds: float) -> list[float]:
    start = time.time()
    _log(f"{run_id}:{name}")
    time.sleep(seconds)
    return [start, time.time()]


@workflow("map-bounded")
async def map_bounded(ctx, input: MapInput) -> dict[str, Any]:
    async def item(c: Any, value: int, index: int) -> Any:
        if input.nested:
            inner = await c.parallel(
                f"inner-{index}",
                [
                    lambda cc: cc.step("x", record, ctx.workflow_id, f"x{index}", value),
                    lambda cc: cc.step("y", record, ctx.workflow_id, f"y{index}", value * 10),
                ],
            )
            return inner.get_results()
        return await c.step(f"item-{index}", interval, ctx.workflow_id, f"i{index}", input.seconds)

    batch = await ctx.map(
        "items", list(range(input.items)), item, max_concurrency=input.max_concurrency
    )
    await ctx.sleep("after", timedelta(seconds=1))
    return {"results": batch.get_results(), "reason": batch.completion_reason.value}


class RulesInput(BaseModel):
    n: int = 4
    fail: list[int] = []
    wait: list[int] = []  # these branches sleep 1 s before their step
    max_concurrency: int | None = 1
    min_successful: int | None = None
    tolerated_failure_count: int | None = None
    tolerated_failure_percentage: float | None = None
    no_config: bool = False
    rethrow: bool = False
    kind: str = "parallel"


def maybe_fail(run_id: str, name: str, fail: bool) -> str:
    _log(f"{run_id}:{name}")
    if fail:
        raise ValueError(f"{name} failed")
    return name


@workflow("batch-rules")
async def batch_rules(ctx, input: RulesInput) -> dict[str, Any]:
    async def run_one(c: Any, i: int) -> str:
        if i in input.wait:
            await c.sleep(f"wait-{i}", 1)
        return await c.step(
            f"b{i}", maybe_fail, ctx.workflow_id, f"b{i}", i in input.fail, retry=NO_RETRY
        )

    config = (
        None
        if input.no_config
        else CompletionConfig(
            min_successful=input.min_successful,
            tolerated_failure_count=input.tolerated_failure_count,
            tolerated_failure_percentage=input.tolerated_failure_percentage,
        )
    )
    if input.kind == "map":
        batch = await ctx.map(
            "rules",
            list(range(input.n)),
            lambda c, item, index: run_one(c, item),
            max_concurrency=input.max_concurrency,
            completion=config,
        )
    else:
        branches = [lambda c, i=i: run_one(c, i) for i in range(input.n)]
        batch = await ctx.parallel(
            "rules", branches, max_concurrency=input.max_concurrency, completion=config
        )
    if input.rethrow:
        batch.throw_if_error()
    await ctx.sleep("after", 1)  # the replay rebuilds the result from the record
    return {
        "completionReason": batch.completion_reason.value,
        "status": batch.status,
        "successCount": batch.success_count,
        "failureCount": batch.failure_count,
        "totalCount": batch.total_count,
        "results": batch.get_results(),
        "statuses": [(i.index, i.status.value) for i in batch.all],
    }


@workflow("child-ctx")
async def child_ctx(ctx, input: dict[str, Any]) -> Any:
    async def body(c: Any, value: str) -> str:
        _log(f"{ctx.workflow_id}:body")
        got = await c.step("inner", record, ctx.workflow_id, "inner", value)
        if input.get("fail"):
            raise RuntimeError("inside the child")
        return got

    try:
        value = await ctx.run_in_child_context("tally", body, input.get("value", "v"))
    except Exception as e:
        value = f"caught {type(e).__name__}: {e}"
    await ctx.sleep("after", 1)
    return value


@workflow("retry-in-branch")
async def retry_in_branch(ctx, input: dict[str, Any]) -> list[str]:
    from .workflows import flaky

    async def retried() -> str:
        policy = RetryPolicy(max_attempts=3, initial_interval=timedelta(seconds=30), jitter=0)
        return await ctx.step("flaky", flaky, ctx.workflow_id, 1, retry=policy)

    async def plain() -> str:
        return await ctx.step("plain", record, ctx.workflow_id, "plain", "plain")

    return list(await asyncio.gather(retried(), plain()))


CONCURRENT = [gather_multi, signal_and_sleep, map_bounded, batch_rules, child_ctx, retry_in_branch]


class ChildInput(BaseModel):
    value: str = "v"
    fail: bool = False
    sleep: float = 0  # seconds the child sleeps (durably) before its step


@workflow("child-work")
async def child_work(ctx, input: ChildInput) -> str:
    if input.sleep:
        await ctx.sleep("child-nap", input.sleep)
    return await ctx.step("work", maybe_fail, ctx.workflow_id, "work", input.fail, retry=NO_RETRY)


class ParentInput(BaseModel):
    children: list[ChildInput] = [ChildInput()]
    after: float = 1  # the parent sleeps this long after its children (a replay)


@workflow("parent")
async def parent(ctx, input: ParentInput) -> list[str]:
    from worker import ChildWorkflowError

    async def one(i: int, spec: ChildInput) -> str:
        try:
            return await ctx.invoke(f"child-{i}", "child-work", spec)
        except ChildWorkflowError as e:
            return f"{e.status}: {e.error_type}"

    results = list(await asyncio.gather(*(one(i, c) for i, c in enumerate(input.children))))
    await ctx.sleep("after", input.after)
    return results


CONCURRENT += [child_work, parent]


class FanInput(BaseModel):
    items: int = 5
    fail: list[int] = []
    sleep: list[int] = []  # items whose child sleeps an hour before its step
    max_concurrency: int | None = None
    tolerated_failure_count: int | None = None
    min_successful: int | None = None
    after: float = 0


@workflow("fan-out")
async def fan_out(ctx, input: FanInput) -> dict[str, Any]:
    items = [
        {"value": f"v{i}", "fail": i in input.fail, "sleep": 3600 if i in input.sleep else 0}
        for i in range(input.items)
    ]
    config = (
        CompletionConfig(
            tolerated_failure_count=input.tolerated_failure_count,
            min_successful=input.min_successful,
        )
        if input.tolerated_failure_count is not None or input.min_successful is not None
        else None
    )
    batch = await ctx.map(
        "fan",
        items,
        workflow="child-work",
        max_concurrency=input.max_concurrency,
        completion=config,
    )
    if input.after:
        await ctx.sleep("after", input.after)
    return {
        "results": batch.get_results(),
        "reason": batch.completion_reason.value,
        "statuses": [i.status.value for i in batch.all],
        "errors": [e.error_type for e in batch.get_errors()],
    }


CONCURRENT.append(fan_out)


@workflow("cancel-branches")
async def cancel_branches(ctx, input: dict[str, Any]) -> list[str]:
    """Two branches in slow steps; a cancel reaches each, and each cleans up."""
    from worker import WorkflowCancelledError

    async def branch(tag: str) -> str:
        try:
            await ctx.step(f"{tag}-slow", timed, ctx.workflow_id, f"{tag}-slow", input["pause"])
            await ctx.step(f"{tag}-next", record, ctx.workflow_id, f"{tag}-next")
            return tag
        except WorkflowCancelledError:
            await ctx.step(f"{tag}-undo", record, ctx.workflow_id, f"{tag}-undo")
            raise

    return list(await asyncio.gather(branch("a"), branch("b"), return_exceptions=False))


CONCURRENT.append(cancel_branches)
