"""Workflows of the chaos campaign and the poison-message test.

Every step function appends one JSON line to the file named by
CHAOS_EXEC_LOG when it starts: the run, the step's name, the epoch of the
claim that runs it, the pid and the start time (epoch ms, the wall clock all
processes on this machine share). The campaign counts executions per step
from it and compares start times with the stored records.

Each workflow's expected history (kinds and names, in position order) is
written down in `checks.expected_history`.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from worker import (
    AT_MOST_ONCE_PER_RETRY,
    NO_RETRY,
    CallbackFailedError,
    CallbackTimeoutError,
    RetryPolicy,
    S3Items,
    WorkflowCancelledError,
    workflow,
)
from worker._context import current_context

from .plan import large_value

ENV_EXEC_LOG = "CHAOS_EXEC_LOG"


def _log_execution(run_id: str, step: str) -> None:
    path = os.environ.get(ENV_EXEC_LOG)
    if not path:
        return
    try:
        epoch = current_context()._s.epoch  # white box: the claim running this step
    except Exception:
        epoch = None
    line = {
        "run": run_id,
        "step": step,
        "epoch": epoch,
        "pid": os.getpid(),
        "t": time.time_ns() // 1_000_000,
    }
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # one write per line: processes do not interleave
    finally:
        os.close(fd)


def executions_so_far(run_id: str, step: str) -> int:
    path = os.environ.get(ENV_EXEC_LOG)
    if not path or not os.path.exists(path):
        return 0
    n = 0
    with open(path) as f:
        for line in f:
            if f'"run":"{run_id}","step":"{step}"' in line:
                n += 1
    return n


def record(run_id: str, step: str, value: Any = None) -> Any:
    _log_execution(run_id, step)
    return value


def slow(run_id: str, step: str, seconds: float) -> str:
    _log_execution(run_id, step)
    time.sleep(seconds)
    return f"{step} done"


def flaky(run_id: str, step: str, fail_times: int) -> str:
    """Fails while this step has run `fail_times` times or fewer, counted across processes."""
    done = executions_so_far(run_id, step)
    _log_execution(run_id, step)
    if done < fail_times:
        raise ConnectionError(f"attempt {done + 1} of {step} failed on purpose")
    return "ok"


def big(run_id: str, step: str, tag: int, size: int) -> dict[str, Any]:
    _log_execution(run_id, step)
    return large_value(tag, size)


def doomed(run_id: str, step: str) -> None:
    _log_execution(run_id, step)
    raise ValueError("this step always fails")


def die(run_id: str, step: str) -> None:
    _log_execution(run_id, step)
    os._exit(17)  # the worker process dies inside the step: a poison message


class StepsInput(BaseModel):
    n: int = 3
    pause: float = 0.0  # seconds the middle step takes


@workflow("chaos.steps")
async def steps(ctx, input: StepsInput) -> list[int]:
    out = []
    for i in range(input.n):
        if input.pause and i == input.n // 2:
            await ctx.step(f"s{i}", slow, ctx.workflow_id, f"s{i}", input.pause)
            out.append(i)
        else:
            out.append(await ctx.step(f"s{i}", record, ctx.workflow_id, f"s{i}", i))
    return out


class SleepInput(BaseModel):
    seconds: float = 1.0


@workflow("chaos.sleepy")
async def sleepy(ctx, input: SleepInput) -> str:
    await ctx.step("a", record, ctx.workflow_id, "a")
    await ctx.sleep("nap", timedelta(seconds=input.seconds))
    await ctx.step("b", record, ctx.workflow_id, "b")
    return "awake"


class SignalInput(BaseModel):
    timeout: float | None = None


@workflow("chaos.signal")
async def signalled(ctx, input: SignalInput) -> Any:
    await ctx.step("a", record, ctx.workflow_id, "a")
    got = await ctx.wait_for_signal("w", "go", timeout=input.timeout)
    await ctx.step("b", record, ctx.workflow_id, "b", got)
    return got if got is not None else "timed out"


class CallbackInput(BaseModel):
    timeout: float | None = None


@workflow("chaos.callback")
async def called_back(ctx, input: CallbackInput) -> Any:
    await ctx.step("a", record, ctx.workflow_id, "a")
    cb = await ctx.create_callback("cb", timeout=input.timeout)
    try:
        got = await cb.result()
    except CallbackTimeoutError:
        got = "timed out"
    except CallbackFailedError as e:
        got = f"failed: {e.error_type}"
    await ctx.step("b", record, ctx.workflow_id, "b", got)
    return got


class RetryInput(BaseModel):
    fail_times: int = 2


@workflow("chaos.retry")
async def retrying(ctx, input: RetryInput) -> str:
    policy = RetryPolicy(
        max_attempts=input.fail_times + 3,
        initial_interval=timedelta(seconds=0.1),
        max_interval=timedelta(seconds=0.5),
        jitter=0.0,
    )
    return await ctx.step("flaky", flaky, ctx.workflow_id, "flaky", input.fail_times, retry=policy)


@workflow("chaos.once")
async def once(ctx, input: dict[str, Any]) -> str:
    """An at-most-once step that workers may be killed in: an interrupted attempt
    is never run again, the next one is (enough attempts that the run completes)."""
    await ctx.step("a", record, ctx.workflow_id, "a")
    policy = RetryPolicy(max_attempts=20, initial_interval=timedelta(seconds=0.1), jitter=0.0)
    return await ctx.step(
        "charge",
        slow,
        ctx.workflow_id,
        "charge",
        input["pause"],
        semantics=AT_MOST_ONCE_PER_RETRY,
        retry=policy,
    )


@workflow("chaos.exhaust")
async def exhaust(ctx, input: dict[str, Any]) -> None:
    policy = RetryPolicy(max_attempts=3, initial_interval=timedelta(seconds=0.1), jitter=0.0)
    await ctx.step("doomed", doomed, ctx.workflow_id, "doomed", retry=policy)


@workflow("chaos.crash")
async def crash(ctx, input: dict[str, Any]) -> None:
    await ctx.step("a", record, ctx.workflow_id, "a")
    raise RuntimeError("the workflow code raised")


class CancelInput(BaseModel):
    pause: float = 1.0


@workflow("chaos.cancel")
async def cancellable(ctx, input: CancelInput) -> str:
    try:
        await ctx.step("a", record, ctx.workflow_id, "a")
        await ctx.step("slow", slow, ctx.workflow_id, "slow", input.pause, retry=NO_RETRY)
        await ctx.sleep("long", timedelta(minutes=30))
        await ctx.step("b", record, ctx.workflow_id, "b")
        return "never cancelled"
    except WorkflowCancelledError:
        await ctx.step("undo", record, ctx.workflow_id, "undo")
        raise


@workflow("chaos.poison")
async def poison(ctx, input: dict[str, Any]) -> None:
    await ctx.step("a", record, ctx.workflow_id, "a")
    await ctx.step("die", die, ctx.workflow_id, "die", retry=NO_RETRY)


class BranchInput(BaseModel):
    pause: float = 0.2  # seconds the first branch's first step takes
    sleep: float = 0.5


@workflow("chaos.gather")
async def gathered(ctx, input: BranchInput) -> list[str]:
    """Two branches of two steps each; the first branch is slower, so the steps
    are recorded out of creation order; then a sleep, so every run replays."""

    async def branch(tag: str, pause: float) -> str:
        if pause:
            await ctx.step(f"{tag}0", slow, ctx.workflow_id, f"{tag}0", pause)
        else:
            await ctx.step(f"{tag}0", record, ctx.workflow_id, f"{tag}0")
        return await ctx.step(f"{tag}1", record, ctx.workflow_id, f"{tag}1", tag)

    import asyncio

    out = await asyncio.gather(branch("a", input.pause), branch("b", 0.0))
    await ctx.sleep("nap", timedelta(seconds=input.sleep))
    return list(out)


@workflow("chaos.batch")
async def batched(ctx, input: BranchInput) -> list[int]:
    """A parallel batch of three one-step branches, then a step: the decision is
    recorded once and a replay rebuilds it."""

    def branch(i: int) -> Any:
        return lambda c: c.step(f"p{i}", record, ctx.workflow_id, f"p{i}", i)

    batch = await ctx.parallel("fan", [branch(i) for i in range(3)], max_concurrency=2)
    await ctx.sleep("nap", timedelta(seconds=input.sleep))
    await ctx.step("after", record, ctx.workflow_id, "after")
    return list(batch.get_results())


@workflow("chaos.invoke")
async def invoking(ctx, input: dict[str, Any]) -> list[int]:
    """A child run (chaos.steps) whose end must reach the parent exactly once."""
    return list(await ctx.invoke("child", "chaos.steps", {"n": 2}))


class DistributedInput(BaseModel):
    sizes: list[int]
    sleep: float = 0.5


@workflow("chaos.distributed")
async def distributed(ctx, input: DistributedInput) -> list[list[int]]:
    """A distributed map: each item a child run (chaos.steps) that the parent
    polls for, two at a time; the decision is recorded once, and the replay
    after the sleep rebuilds the batch from that record."""
    items = [{"n": n} for n in input.sizes]
    batch = await ctx.map("fan", items, workflow="chaos.steps", max_concurrency=2)
    batch.throw_if_error()
    await ctx.sleep("nap", timedelta(seconds=input.sleep))
    await ctx.step("after", record, ctx.workflow_id, "after")
    return [list(r) for r in batch.get_results()]


class LargeInput(BaseModel):
    values: list[tuple[int, int]]  # (tag, size) of the two distinct values
    sleep: float = 0.5


async def _large(ctx: Any, input: LargeInput) -> list[Any]:
    """Step values above the offload threshold (objects in S3, pointers in the
    records); the last is the first again (one object); after the sleep, the
    claim that runs the last step reads the first two back from S3."""
    (tag0, size0), (tag1, size1) = input.values
    a = await ctx.step("v0", big, ctx.workflow_id, "v0", tag0, size0)
    b = await ctx.step("v1", big, ctx.workflow_id, "v1", tag1, size1)
    await ctx.sleep("nap", timedelta(seconds=input.sleep))
    c = await ctx.step("v2", big, ctx.workflow_id, "v2", tag0, size0)
    return [a, b, c]  # above the threshold too: the output is offloaded


@workflow("chaos.large")
async def large(ctx, input: LargeInput) -> list[Any]:
    return await _large(ctx, input)


@workflow("chaos.large_batched", checkpoint="batched")
async def large_batched(ctx, input: LargeInput) -> list[Any]:
    """The same, with its step results written in batch items."""
    return await _large(ctx, input)


class GenerationsInput(BaseModel):
    gen: int = 0  # this generation
    of: int = 3  # how many generations the run has
    acc: list[int] = []  # the values of the generations before this one
    sleep: float = 0.5


@workflow("chaos.generations")
async def generations(ctx, input: GenerationsInput) -> list[int]:
    """Continue-as-new: each generation records one step and sleeps (so a later
    claim replays it from its own history only), then hands its state on to the
    next. The output holds every generation's value once, in order: a generation
    run twice, skipped or continued from a stale state shows in it."""
    g = input.gen
    value = await ctx.step(f"g{g}", record, ctx.workflow_id, f"g{g}", g)
    await ctx.sleep(f"nap{g}", timedelta(seconds=input.sleep))
    acc = [*input.acc, value]
    if g + 1 < input.of:
        nxt = {"gen": g + 1, "of": input.of, "acc": acc, "sleep": input.sleep}
        return await ctx.continue_as_new(nxt)
    return acc


class S3MapInput(BaseModel):
    items: int
    batch: int
    sleep: float = 0.5


def upload_items(run_id: str, items: int) -> str:
    """The run's items object, `{"n": i}` per line (a side effect: the same
    content each time, so an attempt run again writes the same object)."""
    from orchestrator.aws import client
    from orchestrator.settings import Settings

    _log_execution(run_id, "upload")
    settings = Settings.from_env()
    key = f"chaos-items/{run_id}.jsonl"
    body = "".join(json.dumps({"n": i}) + "\n" for i in range(items))
    client("s3", settings).put_object(Bucket=settings.bucket, Key=key, Body=body.encode())
    return key


def batch_sum(run_id: str, items: list[dict[str, int]]) -> int:
    _log_execution(run_id, "sum")
    return sum(item["n"] for item in items)


@workflow("chaos.s3batch")
async def s3batch(ctx, input: dict[str, Any]) -> int:
    """One batch of a map over S3 items: the sum of its items' n."""
    return int(await ctx.step("sum", batch_sum, ctx.workflow_id, input["items"]))


@workflow("chaos.s3map")
async def s3map(ctx, input: S3MapInput) -> list[int]:
    """A distributed map over S3 items in batches, two children at a time; after
    the sleep, a replay returns the map from its record and reads its results
    object lazily."""
    key = await ctx.step("upload", upload_items, ctx.workflow_id, input.items)
    result = await ctx.map(
        "fan", S3Items(key=key), workflow="chaos.s3batch", batch_size=input.batch, max_concurrency=2
    )
    await ctx.sleep("nap", timedelta(seconds=input.sleep))
    return [item.result async for item in result.items()]


ALL = [
    steps,
    sleepy,
    signalled,
    called_back,
    retrying,
    exhaust,
    crash,
    cancellable,
    poison,
    gathered,
    batched,
    invoking,
    distributed,
    large,
    large_batched,
    generations,
    s3batch,
    s3map,
    once,
]
WORKFLOWS = ALL
