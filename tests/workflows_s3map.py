"""Distributed maps over S3 items and batches (tests/functional/test_s3_map.py)."""

from __future__ import annotations

from typing import Any

from worker import S3Items, workflow


@workflow("s3map.batch")
async def batch(ctx: Any, input: dict[str, Any]) -> dict[str, int]:
    """A child: one batch of items `{"n": i}`; each item's `n` must be its index."""
    items = input["items"]
    first = input["first_index"]
    misplaced = sum(1 for j, item in enumerate(items) if item["n"] != first + j)
    total = await ctx.step("sum", lambda: sum(item["n"] for item in items))
    return {"count": len(items), "sum": total, "misplaced": misplaced}


@workflow("s3map.parent")
async def parent(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    result = await ctx.map(
        "batches",
        S3Items(key=input["key"]),
        workflow="s3map.batch",
        batch_size=input["batch_size"],
        max_concurrency=input.get("max_concurrency"),
    )
    if input.get("sleep"):
        await ctx.sleep("pause", input["sleep"])  # the map is replayed from its record after this
    count = total = misplaced = 0
    batches = []
    async for item in result.items():
        batches.append(item.index)
        count += item.result["count"]
        total += item.result["sum"]
        misplaced += item.result["misplaced"]
    return {
        "batches": batches,
        "items": result.item_count,
        "count": count,
        "sum": total,
        "misplaced": misplaced,
        "succeeded": result.success_count,
        "key": result.results_key,
    }


@workflow("s3map.gated")
async def gated(ctx: Any, input: dict[str, Any]) -> int:
    """A child that waits for the signal "go" before it ends."""
    await ctx.wait_for_signal("go", "go")
    return len(input["items"])


@workflow("s3map.refused")
async def refused(ctx: Any, input: dict[str, Any]) -> str:
    try:
        await ctx.map(
            "batches",
            S3Items(key=input["key"]),
            workflow=input.get("workflow", "s3map.batch"),
            batch_size=input["batch_size"],
            max_concurrency=input.get("max_concurrency"),
        )
    except ValueError as e:
        return str(e)
    return "not refused"


@workflow("s3map.list")
async def in_batches(ctx: Any, input: dict[str, Any]) -> list[Any]:
    items = [{"n": i} for i in range(input["items"])]
    result = await ctx.map("batches", items, workflow="s3map.batch", batch_size=input["batch_size"])
    return [[item.index, item.result] for item in result.all]


S3MAP = [batch, gated, parent, refused, in_batches]
