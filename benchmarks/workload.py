"""The benchmark's workflow: S steps with results of about R bytes, and in the
mix one durable sleep (a short one: an SQS delay, no schedule) and one signal
wait without a timeout (no timer) per run."""

from __future__ import annotations

from pydantic import BaseModel

from worker import workflow

SIGNAL_NAME = "go"


class BenchInput(BaseModel):
    steps: int = 10
    result_bytes: int = 100
    mix: bool = False
    sleep_seconds: float = 1.0
    fanout: bool = False  # the steps as the items of one ctx.map instead of a sequence
    distributed: bool = False  # the steps as child runs of one distributed ctx.map
    max_concurrency: int | None = None  # of that map (None: every item at once)
    checkpoint: str = "each"  # of that map ("batched": its items' results several to an item)


def make_result(position: int, size: int) -> str:
    """A step's result: a JSON string of `size` bytes once encoded (quotes included)."""
    head = f"{position}:"
    return head + "x" * max(0, size - 2 - len(head))


@workflow("bench")
async def bench(ctx, input: BenchInput) -> dict[str, int]:
    return await _body(ctx, input)


@workflow("bench_batched", checkpoint="batched")
async def bench_batched(ctx, input: BenchInput) -> dict[str, int]:
    """The same run with batched checkpoints."""
    return await _body(ctx, input)


async def _body(ctx, input: BenchInput) -> dict[str, int]:  # type: ignore[no-untyped-def]
    if input.distributed:
        one = {"steps": 1, "result_bytes": input.result_bytes}
        batch = await ctx.map(
            "items", [one] * input.steps, workflow="bench", max_concurrency=input.max_concurrency
        )
        batch.throw_if_error()
        return {"steps": input.steps}
    if input.fanout:

        async def item(c, position: int, index: int) -> str:  # type: ignore[no-untyped-def]
            return await c.step(f"s{position}", make_result, position, input.result_bytes)

        batch = await ctx.map("items", list(range(input.steps)), item, checkpoint=input.checkpoint)
        batch.throw_if_error()
        return {"steps": input.steps}
    sleep_at = input.steps // 3
    wait_at = (2 * input.steps) // 3
    for i in range(input.steps):
        if input.mix and i == sleep_at:
            await ctx.sleep("nap", input.sleep_seconds)
        if input.mix and i == wait_at:
            await ctx.wait_for_signal("go", SIGNAL_NAME)
        await ctx.step(f"s{i}", make_result, i, input.result_bytes)
    return {"steps": input.steps}


class ValueInput(BaseModel):
    tag: str  # makes every run's values distinct from the other runs'
    bytes: int = 100
    steps: int = 2
    sleep_seconds: float = 1.0


def make_value(tag: str, position: int, size: int) -> str:
    """A step's result of `size` bytes of JSON, distinct for each run and position."""
    head = f"{tag}:{position}:"
    return head + "x" * max(0, size - 2 - len(head))


@workflow("bench_value")
async def bench_value(ctx, input: ValueInput) -> None:
    """The large-value workload (benchmarks/values.py): `steps` steps whose results
    are `bytes` bytes each, then one durable sleep; the claim after the sleep
    replays the steps, reading every result back once. Input and output are a few
    bytes, so they stay inline whatever the threshold the benchmark sets."""
    for i in range(input.steps):
        await ctx.step(f"v{i}", make_value, input.tag, i, input.bytes)
    await ctx.sleep("replay", input.sleep_seconds)


WORKFLOWS = [bench, bench_batched, bench_value]
