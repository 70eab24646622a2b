"""Workflows of the conformance tier's parallel suite (requirements 8-x):
`ctx.parallel`. Branches are built from small factories (`returning`, `stepping`,
`failing`) and count their executions as `b<i>` or their label.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from worker import CompletionConfig, workflow

from .workflows import PARK, echo, projection, ran, slow


def returning(value: Any, label: str | None = None) -> Any:
    """A branch that returns `value` directly (counted as `label`)."""

    async def branch(ctx: Any) -> Any:
        ran(ctx.workflow_id, label or f"b:{value}")
        return value

    return branch


def stepping(value: Any, label: str) -> Any:
    """A branch that runs one step returning `value`."""

    async def branch(ctx: Any) -> Any:
        return await ctx.step(label, echo, ctx.workflow_id, label, value)

    return branch


def failing(label: str) -> Any:
    async def branch(ctx: Any) -> Any:
        ran(ctx.workflow_id, label)
        raise RuntimeError(f"{label} failed")

    return branch


def _kind(kinds: str) -> list[Any]:
    """Branches from a pattern: "s" succeeds ("b<i>"), "f" fails; counted as b<i>."""
    return [
        returning(f"b{i}", f"b{i}") if k == "s" else failing(f"b{i}") for i, k in enumerate(kinds)
    ]


@workflow("parallel-8-1")
async def parallel_basic(ctx) -> list[str]:
    branches = [stepping("task-1", "task-1"), stepping("task-2", "task-2")]
    batch = await ctx.parallel("parallel", branches, max_concurrency=1)
    return batch.get_results()


@workflow("parallel-8-4")
async def parallel_hetero(ctx) -> list[Any]:
    branches = [returning("hello"), returning(42), returning({"k": "v"})]
    return (await ctx.parallel("hetero", branches, max_concurrency=1)).get_results()


@workflow("parallel-8-5")
async def parallel_empty(ctx) -> dict[str, Any]:
    batch = await ctx.parallel("empty", [])
    return {"results": batch.get_results(), **projection(batch)}


async def _parallel_projection(ctx: Any, name: str, kinds: str, **config: Any) -> dict[str, Any]:
    batch = await ctx.parallel(
        name, _kind(kinds), max_concurrency=1, completion=CompletionConfig(**config)
    )
    return projection(batch)


@workflow("parallel-8-6")
async def parallel_failfast(ctx) -> dict[str, Any]:
    return await _parallel_projection(ctx, "failfast", "sfs", tolerated_failure_count=0)


@workflow("parallel-8-7")
async def parallel_rethrow(ctx) -> None:
    completion = CompletionConfig(tolerated_failure_count=0)
    batch = await ctx.parallel("throwing", _kind("fs"), max_concurrency=1, completion=completion)
    batch.throw_if_error()


@workflow("parallel-8-8")
async def parallel_min_successful(ctx) -> dict[str, Any]:
    return await _parallel_projection(ctx, "min-successful", "ssss", min_successful=2)


@workflow("parallel-8-9")
async def parallel_tolerated(ctx) -> dict[str, Any]:
    return await _parallel_projection(ctx, "tolerated", "sfs", tolerated_failure_count=1)


@workflow("parallel-8-10")
async def parallel_tolerance_exceeded(ctx) -> dict[str, Any]:
    return await _parallel_projection(ctx, "tolerated-exceeded", "ffs", tolerated_failure_count=1)


def sleeping_step(value: str, seconds: float) -> Any:
    async def branch(ctx: Any) -> str:
        return await ctx.step(value, slow, ctx.workflow_id, value, seconds)

    return branch


@workflow("parallel-8-11")
async def parallel_concurrent(ctx) -> list[str]:
    # r0 is the slowest: with two in flight, r1 finishes (and r2 starts) before it.
    branches = [sleeping_step("r0", 1.0), sleeping_step("r1", 0.0), sleeping_step("r2", 0.1)]
    return (await ctx.parallel("concurrent", branches, max_concurrency=2)).get_results()


@workflow("parallel-8-13")
async def parallel_percentage_exceeded(ctx) -> dict[str, Any]:
    return await _parallel_projection(ctx, "tolerated-pct", "ffss", tolerated_failure_percentage=25)


@workflow("parallel-8-14")
async def parallel_branch_waits(ctx) -> list[str]:
    async def waits(c: Any) -> str:
        await c.sleep("wait", PARK)
        return "b1"

    batch = await ctx.parallel("replay", [stepping("b0", "b0"), waits], max_concurrency=1)
    return batch.get_results()


def _unwrap(value: Any) -> Any:
    return value["wrapped"] if isinstance(value, dict) else value


Wrapped = Annotated[str, PlainSerializer(lambda v: {"wrapped": v}), BeforeValidator(_unwrap)]


def wrapped(value: str) -> Any:
    async def branch(ctx: Any) -> Wrapped:
        ran(ctx.workflow_id, value)
        return value

    return branch


@workflow("parallel-8-15")
async def parallel_item_serdes(ctx) -> list[str]:
    batch = await ctx.parallel("serde", [wrapped("x"), wrapped("y")], max_concurrency=1)
    await ctx.sleep("wait", PARK)  # the replay reads the branches back through the serdes
    return batch.get_results()


@workflow("parallel-8-16")
async def parallel_all_fail_tolerated(ctx) -> dict[str, Any]:
    return await _parallel_projection(ctx, "all-fail", "fff", tolerated_failure_count=3)


@workflow("parallel-8-17")
async def parallel_min_not_reached(ctx) -> dict[str, Any]:
    return await _parallel_projection(ctx, "min-not-reached", "sfs", min_successful=3)


@workflow("parallel-8-18")
async def parallel_combined(ctx) -> dict[str, Any]:
    return await _parallel_projection(
        ctx, "combined", "ffss", min_successful=3, tolerated_failure_count=1
    )


@workflow("parallel-8-19")
async def parallel_zero_concurrency(ctx) -> None:
    await ctx.parallel("bad-concurrency", _kind("ss"), max_concurrency=0)


@workflow("parallel-8-20")
async def parallel_accessors(ctx) -> dict[str, Any]:
    completion = CompletionConfig(tolerated_failure_count=1)
    batch = await ctx.parallel("accessors", _kind("sfs"), max_concurrency=1, completion=completion)
    return {
        "hasFailure": batch.has_failure,
        "successCount": len(batch.succeeded()),
        "failureCount": len(batch.failed()),
        "errorCount": len(batch.get_errors()),
        "errors": [[e.error_type, e.error_message] for e in batch.get_errors()],
    }


@workflow("parallel-8-21")
async def parallel_nested(ctx) -> list[Any]:
    async def outer_branch(c: Any) -> list[str]:
        inner = [stepping("i1", "i1"), stepping("i2", "i2")]
        return (await c.parallel("inner", inner, max_concurrency=1)).get_results()

    return (await ctx.parallel("outer", [outer_branch], max_concurrency=1)).get_results()


@workflow("parallel-8-22")
async def parallel_percentage_boundary(ctx) -> dict[str, Any]:
    return await _parallel_projection(ctx, "pct-boundary", "fsss", tolerated_failure_percentage=25)


@workflow("parallel-8-2")
async def parallel_no_name(ctx) -> list[str]:
    """The branches-only form: the default name is "parallel"."""
    batch = await ctx.parallel(
        [returning("alpha", "b0"), returning("beta", "b1")], max_concurrency=1
    )
    return batch.get_results()


@workflow("parallel-8-3")
async def parallel_named_branches(ctx) -> list[Any]:
    batch = await ctx.parallel(
        "named",
        [("first", returning("one", "b0")), ("second", returning("two", "b1"))],
        max_concurrency=1,
    )
    return [[item.name, item.result] for item in batch.all]


def _flat_or_nested(nesting: str) -> Any:
    async def run(ctx) -> list[str]:
        branches = [stepping("fa", "fa"), stepping("fb", "fb")]
        batch = await ctx.parallel(nesting, branches, max_concurrency=1, nesting=nesting)
        await ctx.sleep("after", PARK)  # a replay after the batch
        return batch.get_results()

    return run


parallel_nesting_flat = workflow("parallel-8-12")(_flat_or_nested("flat"))
parallel_nesting_nested = workflow("parallel-8-12-nested")(_flat_or_nested("nested"))


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
