"""Workflows of the conformance tier's map suite (requirements 9-x): `ctx.map`.
The item functions count their executions as `item<index>`; 9-16's results are
too large to record, so a replay runs the items again.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from worker import (
    BatchItem,
    BatchItemStatus,
    BatchResult,
    CompletionConfig,
    CompletionReason,
    workflow,
)

from .workflows import LARGE, PARK, echo, greet, projection, ran, slow


async def map_greet(ctx: Any, item: str, index: int) -> str:
    return await ctx.step(f"greet-{index}", greet, ctx.workflow_id, item)


async def map_item(ctx: Any, item: Any, index: int) -> Any:
    """Returns the item directly; an item "fail" raises."""
    ran(ctx.workflow_id, f"item{index}")
    if item == "fail":
        raise RuntimeError(f"item {index} failed")
    return item


@workflow("map-9-1")
async def map_basic(ctx, input: list[str]) -> list[str]:
    return (await ctx.map("map", input, map_greet, max_concurrency=1)).get_results()


@workflow("map-9-3")
async def map_indexed(ctx, input: list[int]) -> list[int]:
    async def add_index(c: Any, item: int, index: int) -> int:
        return item + index

    return (await ctx.map("indexed", input, add_index, max_concurrency=1)).get_results()


@workflow("map-9-4")
async def map_empty(ctx, input: list[Any]) -> dict[str, Any]:
    batch = await ctx.map("empty", input, map_item)
    return {"results": batch.get_results(), **projection(batch)}


async def _map_projection(ctx: Any, name: str, items: list[str], **config: Any) -> dict[str, Any]:
    completion = CompletionConfig(**config)
    batch = await ctx.map(name, items, map_item, max_concurrency=1, completion=completion)
    return projection(batch)


@workflow("map-9-5")
async def map_failfast(ctx) -> dict[str, Any]:
    return await _map_projection(ctx, "failfast", ["ok", "fail", "ok"], tolerated_failure_count=0)


@workflow("map-9-6")
async def map_rethrow(ctx) -> None:
    completion = CompletionConfig(tolerated_failure_count=0)
    batch = await ctx.map(
        "throwing", ["fail", "ok"], map_item, max_concurrency=1, completion=completion
    )
    batch.throw_if_error()


@workflow("map-9-7")
async def map_min_successful(ctx) -> dict[str, Any]:
    return await _map_projection(ctx, "min-successful", ["a", "b", "c", "d"], min_successful=2)


@workflow("map-9-8")
async def map_tolerated(ctx) -> dict[str, Any]:
    return await _map_projection(ctx, "tolerated", ["a", "fail", "c"], tolerated_failure_count=1)


@workflow("map-9-9")
async def map_tolerance_exceeded(ctx) -> dict[str, Any]:
    items = ["fail", "fail", "c"]
    return await _map_projection(ctx, "tolerated-exceeded", items, tolerated_failure_count=1)


@workflow("map-9-10")
async def map_percentage_exceeded(ctx) -> dict[str, Any]:
    items = ["fail", "fail", "c", "d"]
    return await _map_projection(ctx, "tolerated-pct", items, tolerated_failure_percentage=25)


@workflow("map-9-11")
async def map_concurrent(ctx) -> list[str]:
    delays = [1.0, 0.0, 0.1]

    async def item_fn(c: Any, item: str, index: int) -> str:
        return await c.step(item, slow, c.workflow_id, item, delays[index])

    return (
        await ctx.map("concurrent", ["r0", "r1", "r2"], item_fn, max_concurrency=2)
    ).get_results()


def _unprefix(value: Any) -> Any:
    return value.removeprefix("wrapped:") if isinstance(value, str) else value


Prefixed = Annotated[str, PlainSerializer(lambda v: f"wrapped:{v}"), BeforeValidator(_unprefix)]


async def upper_item(ctx: Any, item: str, index: int) -> Prefixed:
    ran(ctx.workflow_id, f"item{index}")
    return item.upper()


@workflow("map-9-14")
async def map_item_serdes(ctx) -> list[str]:
    return (await ctx.map("serdes", ["x", "y"], upper_item, max_concurrency=1)).get_results()


@workflow("map-9-15")
async def map_iteration_waits(ctx) -> list[str]:
    async def item_fn(c: Any, item: str, index: int) -> str:
        if index == 1:
            await c.sleep("wait", PARK)
        return await c.step(item, echo, c.workflow_id, item, item)

    return (await ctx.map("suspend", ["r0", "r1"], item_fn, max_concurrency=1)).get_results()


@workflow("map-9-16")
async def map_large_results(ctx) -> dict[str, int]:
    async def item_fn(c: Any, item: str, index: int) -> str:
        ran(c.workflow_id, f"item{index}")
        return item * (70 * 1024)

    batch = await ctx.map("large", ["a", "b", "c", "d"], item_fn, max_concurrency=1)
    await ctx.sleep("wait", PARK)  # the replay re-runs the items to rebuild the result
    assert [len(r) for r in batch.get_results()] == [70 * 1024] * 4
    return {"successCount": batch.success_count, "totalCount": batch.total_count}


@workflow("map-9-16-early")
async def map_large_results_early_completion(ctx) -> dict[str, Any]:
    """As 9-16, but the map ends early (min_successful=1) while item 1 waits: the
    replay that rebuilds the large result must not run the cancelled item on."""

    async def item_fn(c: Any, item: str, index: int) -> str:
        if index == 1:
            await c.sleep("wait", PARK)
            return await c.step("late", echo, c.workflow_id, "late", "late")
        ran(c.workflow_id, f"item{index}")
        return item * LARGE

    completion = CompletionConfig(min_successful=1)
    batch = await ctx.map("early", ["a", "b"], item_fn, completion=completion)
    await ctx.sleep("wait", PARK)
    return {"reason": batch.completion_reason.value, "started": [i.index for i in batch.started()]}


@workflow("map-9-17")
async def map_then_wait(ctx) -> list[str]:
    async def item_fn(c: Any, item: str, index: int) -> str:
        ran(c.workflow_id, f"item{index}")
        return item.upper()

    batch = await ctx.map("then-wait", ["a", "b"], item_fn, max_concurrency=1)
    await ctx.sleep("wait", PARK)
    return batch.get_results()


@workflow("map-9-18")
async def map_failure_then_wait(ctx) -> dict[str, Any]:
    completion = CompletionConfig(tolerated_failure_count=1)
    batch = await ctx.map(
        "fail-then-wait", ["ok", "fail"], map_item, max_concurrency=1, completion=completion
    )
    await ctx.sleep("wait", PARK)
    return projection(batch)


async def double(ctx: Any, item: int, index: int) -> int:
    ran(ctx.workflow_id, f"item{index}")
    return item * 2


@workflow("map-9-2")
async def map_no_name(ctx, input: list[int]) -> list[int]:
    """The items-only form: the default name is the function's, "double"."""
    return (await ctx.map(input, double, max_concurrency=1)).get_results()


async def step_item(ctx: Any, item: str, index: int) -> str:
    return await ctx.step(item, echo, ctx.workflow_id, item, item)


def _flat_or_nested(nesting: str) -> Any:
    async def run(ctx) -> list[str]:
        batch = await ctx.map(nesting, ["fa", "fb"], step_item, max_concurrency=1, nesting=nesting)
        await ctx.sleep("after", PARK)  # a replay after the map
        return batch.get_results()

    return run


map_flat = workflow("map-9-12")(_flat_or_nested("flat"))
map_nested = workflow("map-9-12-nested")(_flat_or_nested("nested"))


async def times_ten(ctx: Any, item: int, index: int) -> int:
    ran(ctx.workflow_id, f"item{index}")
    return item * 10


@workflow("map-9-13")
async def map_item_namer(ctx, input: list[int]) -> list[Any]:
    batch = await ctx.map(
        "named-items",
        input,
        times_ten,
        max_concurrency=1,
        nesting="nested",
        item_namer=lambda item, index: f"item-{item}",
    )
    return [[item.name, item.result] for item in batch.all]


class OpSerde:
    """9-19's operation-level serializer: the whole result as "OPSERDE:X,Y"."""

    def dumps(self, result: BatchResult[Any]) -> str:
        return "OPSERDE:" + ",".join(result.get_results())

    def loads(self, text: str) -> BatchResult[Any]:
        values = text.removeprefix("OPSERDE:").split(",")
        items = [BatchItem(i, BatchItemStatus.SUCCEEDED, result=v) for i, v in enumerate(values)]
        return BatchResult(items, CompletionReason.ALL_COMPLETED, len(items))


async def upper(ctx: Any, item: str, index: int) -> str:
    ran(ctx.workflow_id, f"item{index}")
    return item.upper()


@workflow("map-9-19")
async def map_serializer(ctx) -> list[str]:
    batch = await ctx.map("serde", ["x", "y"], upper, max_concurrency=1, serializer=OpSerde())
    return batch.get_results()


@workflow("map-9-20")
async def map_serializer_replayed(ctx) -> list[str]:
    batch = await ctx.map("serde", ["x", "y"], upper, max_concurrency=1, serializer=OpSerde())
    await ctx.sleep("after", PARK)  # the replay reads the map back through loads
    return batch.get_results()


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
