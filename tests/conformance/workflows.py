"""Workflows of the conformance tier, one per requirement (named after it).

They port the intent of the AWS durable execution conformance requirements
(step, wait, child, parallel, map) to this engine's API. Step functions and
bodies call `ran(run_id, label)` each time they really execute, so a test can
tell a replay (the recorded outcome returned) from a re-execution. Timers
and retry delays last an hour rather than the requirements' one or two
seconds: the run then parks on a schedule that only the skipping clock reaches,
so each park is seen by the tier's driver however slow the machine is; the
durations a requirement is about (2-4, 2-5, 1-14) are kept.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from worker import (
    NO_RETRY,
    BatchResult,
    ChildContextError,
    CompletionConfig,
    RetryPolicy,
    StepFailedError,
    workflow,
)

PARK = timedelta(hours=1)  # a wait that always parks the run

_lock = threading.Lock()
_executions: Counter[tuple[str, str]] = Counter()


def ran(run_id: str, label: str) -> int:
    """Count one real execution; returns how many there have been, this one included."""
    with _lock:
        _executions[(run_id, label)] += 1
        return _executions[(run_id, label)]


def executions(run_id: str, label: str) -> int:
    with _lock:
        return _executions[(run_id, label)]


class TransientError(Exception):
    pass


class PermanentError(Exception):
    pass


# --- step functions ---------------------------------------------------------------------


def greet(rid: str, name: str) -> str:
    ran(rid, "greet")
    return f"Hello, {name}!"


def echo(rid: str, label: str, value: Any) -> Any:
    ran(rid, label)
    return value


def nothing(rid: str) -> None:
    ran(rid, "nothing")


def fail(rid: str, label: str) -> None:
    ran(rid, label)
    raise RuntimeError(f"{label} failed")


def flaky(rid: str, label: str, failures: int, value: Any, error: type[Exception] = RuntimeError):
    """Fails the first `failures` executions, then returns `value`."""
    if ran(rid, label) <= failures:
        raise error(f"{label}: attempt failed")
    return value


def slow(rid: str, label: str, seconds: float) -> str:
    time.sleep(seconds)
    ran(rid, label)
    return label


def build_response(rid: str, event: dict[str, Any]) -> dict[str, Any]:
    ran(rid, "build")
    return {"user": {"name": event["name"], "tags": event["tags"]}, "count": len(event["tags"])}


def uppercase_serialized(rid: str, value: str) -> Annotated[str, PlainSerializer(str.upper)]:
    """The engine's per-step serdes: the return annotation's serializer writes the record."""
    ran(rid, "upper")
    return value


def projection(batch: BatchResult[Any]) -> dict[str, Any]:
    return {
        "completionReason": batch.completion_reason.value,
        "status": batch.status,
        "successCount": batch.success_count,
        "failureCount": batch.failure_count,
        "totalCount": batch.total_count,
    }


# --- step suite (1-x) ---------------------------------------------------------------------


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


_PARKING_RETRY = dict(initial_interval=PARK, max_interval=PARK, backoff=1.0, jitter=0.0)


@workflow("step-1-11")
async def step_retry_then_succeed(ctx) -> str:
    policy = RetryPolicy(max_attempts=3, **_PARKING_RETRY)
    return await ctx.step(
        "unreliable", flaky, ctx.workflow_id, "unreliable", 1, "Operation succeeded", retry=policy
    )


@workflow("step-1-12")
async def step_retry_exhausted(ctx) -> None:
    policy = RetryPolicy(max_attempts=4, **_PARKING_RETRY)
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
    policy = RetryPolicy(max_attempts=3, non_retryable=[PermanentError], **_PARKING_RETRY)
    return await ctx.step(
        "transient", flaky, ctx.workflow_id, "transient", 1, "ok", TransientError, retry=policy
    )


@workflow("step-1-16")
async def step_transient_not_retried(ctx) -> str:
    policy = RetryPolicy(max_attempts=3, non_retryable=[TransientError], **_PARKING_RETRY)
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


# --- wait suite (2-x) ---------------------------------------------------------------------


@workflow("wait-2-1")
async def wait_basic(ctx) -> None:
    await ctx.sleep("wait", PARK)


@workflow("wait-2-2")
async def wait_named(ctx) -> None:
    await ctx.sleep("custom_wait_name", PARK)


@workflow("wait-2-3")
async def wait_sequential(ctx) -> dict[str, int]:
    await ctx.sleep("wait-1", PARK)
    await ctx.sleep("wait-2", PARK)
    return {"completedWaits": 2}


@workflow("wait-2-4")
async def wait_minutes(ctx) -> None:
    await ctx.sleep("wait", timedelta(minutes=1))


@workflow("wait-2-5")
async def wait_hours(ctx) -> None:
    await ctx.sleep("wait", timedelta(hours=1))


# --- child context suite (3-x) ------------------------------------------------------------


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
        policy = RetryPolicy(max_attempts=3, **_PARKING_RETRY)
        return await c.step("flaky", flaky, c.workflow_id, "flaky", 1, input, retry=policy)

    return await ctx.run_in_child_context("child", body)


@workflow("child-3-8")
async def child_step_retry_exhausted(ctx) -> None:
    async def body(c: Any) -> None:
        policy = RetryPolicy(max_attempts=2, **_PARKING_RETRY)
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


LARGE = 300 * 1024  # over the 256 KB a record keeps


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
        return await c.step("crashy", crash_once, c.workflow_id, input["marker"], input["value"])

    return await ctx.run_in_child_context("child", body)


def crash_once(rid: str, marker: str, value: str) -> str:
    """Ends the worker process the first time (process.exit in the requirement)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed")
        os._exit(3)
    ran(rid, "crashy")
    return value


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


# --- parallel suite (8-x) -----------------------------------------------------------------


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


# --- map suite (9-x) ----------------------------------------------------------------------


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


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
