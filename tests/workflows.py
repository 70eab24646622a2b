"""Workflows the tests run, in-process and in worker subprocesses.

Step functions append "<run id>:<step>" to the file named by TEST_EXEC_LOG
each time they actually execute, so tests can count executions across
processes (a replayed step must not appear twice)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from worker import NO_RETRY, workflow


def _log(entry: str) -> None:
    path = os.environ.get("TEST_EXEC_LOG")
    if path:
        with open(path, "a") as f:
            f.write(entry + "\n")
            f.flush()


def record(run_id: str, step: str, value: Any = None) -> Any:
    _log(f"{run_id}:{step}")
    return value


def slow(run_id: str, step: str, seconds: float, marker: str | None = None) -> str:
    _log(f"{run_id}:{step}:start")
    if marker:
        Path(marker).write_text("started")
    time.sleep(seconds)
    _log(f"{run_id}:{step}")
    return f"{step} done"


def boom(run_id: str) -> None:
    _log(f"{run_id}:boom")
    raise ValueError("boom")


class CountInput(BaseModel):
    steps: int = 3
    pause: float = 0.0  # seconds the middle step blocks
    marker: str | None = None


@workflow("count")
async def count(ctx, input: CountInput) -> dict[str, Any]:
    results = []
    for i in range(input.steps):
        if input.pause and i == input.steps // 2:
            results.append(
                await ctx.step(f"s{i}", slow, ctx.workflow_id, f"s{i}", input.pause, input.marker)
            )
        else:
            results.append(await ctx.step(f"s{i}", record, ctx.workflow_id, f"s{i}", i))
    return {"results": results}


@workflow("failing")
async def failing(ctx, input: dict[str, Any]) -> None:
    await ctx.step("ok", record, ctx.workflow_id, "ok")
    await ctx.step("boom", boom, ctx.workflow_id, retry=NO_RETRY)


@workflow("caught")
async def caught(ctx, input: dict[str, Any]) -> str:
    from worker import StepFailedError

    try:
        await ctx.step("boom", boom, ctx.workflow_id, retry=NO_RETRY)
    except StepFailedError as e:
        return f"caught {e.error_type}: {e.error_message}"
    return "not reached"


_flip: dict[str, int] = {}


@workflow("drifting")
async def drifting(ctx, input: dict[str, Any]) -> None:
    """Non-deterministic on purpose: the step name changes between executions."""
    n = _flip.get(ctx.workflow_id, 0)
    _flip[ctx.workflow_id] = n + 1
    await ctx.step(f"step-v{n}", record, ctx.workflow_id, "x")
    await ctx.sleep("nap", 0.5)


class SleepInput(BaseModel):
    seconds: float


@workflow("sleeper")
async def sleeper(ctx, input: SleepInput) -> str:
    await ctx.step("before", record, ctx.workflow_id, "before")
    await ctx.sleep("nap", timedelta(seconds=input.seconds))
    await ctx.step("after", record, ctx.workflow_id, "after")
    return "awake"


class WaitInput(BaseModel):
    waits: int = 1
    timeout: float | None = None
    signal: str = "go"


@workflow("waiter")
async def waiter(ctx, input: WaitInput) -> list[Any]:
    got = []
    for i in range(input.waits):
        got.append(await ctx.wait_for_signal(f"wait-{i}", input.signal, timeout=input.timeout))
        await ctx.step(f"after-{i}", record, ctx.workflow_id, f"after-{i}")
    return got


def sleeps_inside(ctx: Any) -> None:
    import asyncio

    asyncio.run(ctx.sleep("inner", 1))


@workflow("misuse")
async def misuse(ctx, input: dict[str, Any]) -> None:
    await ctx.step("bad", sleeps_inside, ctx)


# --- retries, timeouts, cancellation -------------------------------------------------------
class CardDeclinedError(Exception):
    pass


def flaky(run_id: str, fail_times: int) -> str:
    """Fails the first `fail_times` executions for this run, then succeeds."""
    path = os.environ.get("TEST_EXEC_LOG")
    done = 0
    if path and os.path.exists(path):
        with open(path) as f:
            done = sum(1 for line in f if line.startswith(f"{run_id}:flaky"))
    _log(f"{run_id}:flaky")
    if done < fail_times:
        raise ConnectionError(f"attempt {done + 1} failed")
    return f"ok after {done + 1}"


def decline(run_id: str, how: str) -> None:
    _log(f"{run_id}:decline")
    if how == "type":
        raise CardDeclinedError("card declined")
    from worker import NonRetryableError

    raise NonRetryableError("do not retry this")


class RetryInput(BaseModel):
    fail_times: int = 2
    max_attempts: int = 5
    interval: float = 0.05
    timeout: float | None = None
    pause: float = 0.0


@workflow("retrying")
async def retrying(ctx, input: RetryInput) -> str:
    from worker import RetryPolicy

    policy = RetryPolicy(
        max_attempts=input.max_attempts,
        initial_interval=timedelta(seconds=input.interval),
        max_interval=timedelta(seconds=max(input.interval, 1) * 100),
        jitter=0.0,
    )
    if input.pause:
        return await ctx.step(
            "slow", slow, ctx.workflow_id, "slow", input.pause, retry=policy, timeout=input.timeout
        )
    return await ctx.step(
        "flaky", flaky, ctx.workflow_id, input.fail_times, retry=policy, timeout=input.timeout
    )


@workflow("declining")
async def declining(ctx, input: dict[str, Any]) -> None:
    from worker import RetryPolicy

    policy = RetryPolicy(
        max_attempts=5, initial_interval=timedelta(seconds=0.05), non_retryable=[CardDeclinedError]
    )
    await ctx.step("charge", decline, ctx.workflow_id, input["how"], retry=policy)


@workflow("compensating")
async def compensating(ctx, input: dict[str, Any]) -> str:
    from worker import RetryPolicy, StepFailedError

    try:
        await ctx.step(
            "charge",
            flaky,
            ctx.workflow_id,
            99,
            retry=RetryPolicy(max_attempts=2, initial_interval=timedelta(seconds=0.05)),
        )
    except StepFailedError as e:
        await ctx.step("refund", record, ctx.workflow_id, "refund")
        return f"compensated after {e.error_type}"
    return "charged"


class CleanupInput(BaseModel):
    pause: float = 2.0
    marker: str | None = None


@workflow("cleanup")
async def cleanup(ctx, input: CleanupInput) -> str:
    from worker import WorkflowCancelledError

    try:
        await ctx.step("work", slow, ctx.workflow_id, "work", input.pause, input.marker)
        await ctx.step("more", record, ctx.workflow_id, "more")
        return "finished"
    except WorkflowCancelledError:
        await ctx.step("undo", record, ctx.workflow_id, "undo")
        raise


ALL = [
    count,
    failing,
    caught,
    drifting,
    sleeper,
    waiter,
    misuse,
    retrying,
    declining,
    compensating,
    cleanup,
]
WORKFLOWS = ALL


@workflow("chatty")
async def chatty(ctx, input: dict[str, Any]) -> str:
    ctx.logger.info("starting")
    await ctx.step("one", record, ctx.workflow_id, "one")
    ctx.logger.info("before the nap")
    await ctx.sleep("nap", 0.2)
    ctx.logger.info("after the nap")
    await ctx.step("two", record, ctx.workflow_id, "two")
    return "ok"


ALL.append(chatty)


def timed(run_id: str, seconds: float, gate: str | None = None) -> None:
    """Logs "<run id>:held:<start>:<end>" (wall-clock seconds) around a sleep, or,
    with `gate`, around a wait for that file to exist (at most two minutes)."""
    start = time.time()
    _log(f"{run_id}:held-start:{start:.6f}")
    if gate is None:
        time.sleep(seconds)
    else:
        while not os.path.exists(gate) and time.time() < start + 120:
            time.sleep(0.02)
    _log(f"{run_id}:held:{start:.6f}:{time.time():.6f}")


@workflow("limited")
async def limited(ctx, input: dict[str, Any]) -> str:
    seconds = float(input.get("seconds", 0.05))
    await ctx.step("hold", timed, ctx.workflow_id, seconds, input.get("gate"))
    return "done"


ALL.append(limited)


from tests.concurrent_workflows import CONCURRENT  # noqa: E402  (they import from here)

ALL.extend(CONCURRENT)


class TinyInput(BaseModel):
    steps: int = 10
    mark_after: int | None = None  # a zero sleep after this many steps: flushes the buffer
    nap_after: int | None = None  # a real sleep after this many steps: the run parks
    nap: float = 0.3  # its length (seconds)
    pause_at: int | None = None  # this step blocks `pause` seconds (writes `marker` first)
    pause: float = 0.0
    marker: str | None = None
    gate_at: int | None = None  # at this step the run fails unless `gate` (a file) exists
    gate: str | None = None


@workflow("tiny", checkpoint="batched")
async def tiny(ctx, input: TinyInput) -> int:
    """Many tiny steps with batched checkpoints."""
    total = 0
    for i in range(input.steps):
        if i == input.mark_after:
            await ctx.sleep("mark", 0)  # an unbatched record: everything before it is written
        if i == input.nap_after:
            await ctx.sleep("nap", input.nap)
        if i == input.gate_at and not Path(input.gate or "").is_file():
            raise RuntimeError("the gate is closed")  # workflow code: no step record
        if i == input.pause_at:
            await ctx.step(f"t{i}", slow, ctx.workflow_id, f"t{i}", input.pause, input.marker)
        else:
            total += await ctx.step(f"t{i}", record, ctx.workflow_id, f"t{i}", i)
    return total


async def _tiny_item(ctx, item: int, index: int) -> int:
    return await ctx.step("item", record, ctx.workflow_id, f"item{index}", item * 2)


class TinyMapInput(BaseModel):
    items: int = 20
    checkpoint: str = "each"


@workflow("tiny_map")
async def tiny_map(ctx, input: TinyMapInput) -> list[Any]:
    batch = await ctx.map(
        "double", list(range(input.items)), _tiny_item, checkpoint=input.checkpoint
    )
    return batch.get_results()


ALL.extend([tiny, tiny_map])
