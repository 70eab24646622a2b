"""Workflows with large values (the claim check), in-process and in worker
subprocesses (`WorkerProcess(env, module="tests.workflows_large")`). Step
functions log "<run id>:<step>" to TEST_EXEC_LOG each time they execute."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from worker import NO_RETRY, workflow


def _log(entry: str) -> None:
    path = os.environ.get("TEST_EXEC_LOG")
    if path:
        with open(path, "a") as f:
            f.write(entry + "\n")


def make_value(run_id: str, size: int, seed: str) -> dict[str, Any]:
    _log(f"{run_id}:make")
    return _value(size, seed)


def _value(size: int, seed: str) -> dict[str, Any]:
    """A JSON value of at least `size` bytes, the same for the same arguments."""
    unit = hashlib.sha256(seed.encode()).hexdigest()
    rows = [f"{i}:{unit}" for i in range(size // (len(unit) + 4) + 1)]
    return {"seed": seed, "rows": rows}


def fingerprint(run_id: str, value: dict[str, Any]) -> str:
    _log(f"{run_id}:fingerprint")
    return hashlib.sha256("|".join(value["rows"]).encode()).hexdigest()


def slow_value(run_id: str, size: int, seed: str, hold: float) -> dict[str, Any]:
    _log(f"{run_id}:again")
    value = _value(size, seed)
    time.sleep(hold)  # long enough for the test to kill the worker after the first record
    return value


@workflow("large.value")
async def large_value(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    """A large step result, read back after a sleep (a replay from the records),
    used by a later step, and returned as a large output."""
    size, seed = int(input["size"]), str(input.get("seed", "a"))
    value = await ctx.step("make", make_value, ctx.workflow_id, size, seed, retry=NO_RETRY)
    await ctx.sleep("nap", float(input.get("sleep", 0.2)))
    digest = await ctx.step("fingerprint", fingerprint, ctx.workflow_id, value)
    if input.get("hold"):
        await ctx.step(
            "again", slow_value, ctx.workflow_id, size, seed, float(input["hold"]), retry=NO_RETRY
        )
    return {"digest": digest, "value": value}


@workflow("large.twice")
async def large_twice(ctx: Any, input: dict[str, Any]) -> int:
    """Two steps with identical large results: one object."""
    size = int(input["size"])
    a = await ctx.step("one", make_value, ctx.workflow_id, size, "same")
    b = await ctx.step("two", make_value, ctx.workflow_id, size, "same")
    return len(a["rows"]) + len(b["rows"])


@workflow("large.context")
async def large_context(ctx: Any, input: dict[str, Any]) -> int:
    """A child context's and a map's results, each large as a whole."""
    size = int(input["size"])

    async def inner(c: Any) -> dict[str, Any]:
        return await c.step("make", make_value, ctx.workflow_id, size, "ctx")

    whole = await ctx.run_in_child_context("inner", inner)
    batch = await ctx.map(
        "parts",
        ["p", "q"],
        lambda c, item, i: c.step("part", make_value, ctx.workflow_id, size // 2, item),
    )
    await ctx.sleep("nap", 0.2)
    parts = batch.get_results()
    return len(whole["rows"]) + sum(len(p["rows"]) for p in parts)


@workflow("large.batched", checkpoint="batched")
async def large_batched(ctx: Any, input: dict[str, Any]) -> list[str]:
    """Batched checkpoints with results above the offload threshold: several go
    into one batch item as pointers, then are read back after a sleep."""
    size = int(input["size"])
    values = [
        await ctx.step(f"make.{seed}", make_value, ctx.workflow_id, size, seed, retry=NO_RETRY)
        for seed in ("a", "b", "c")
    ]
    await ctx.sleep("nap", float(input.get("nap", 0.2)))
    return [
        await ctx.step(f"print.{i}", fingerprint, ctx.workflow_id, v) for i, v in enumerate(values)
    ]


@workflow("large.child")
async def large_child(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    """A child run whose output is above the threshold (returned, not a step's)."""
    return _value(int(input["size"]), str(input["seed"]))


@workflow("large.parent")
async def large_parent(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    """Invokes `large.child`, then reads its output again after a sleep (a replay
    of the invoke's record)."""
    value = await ctx.invoke("child", "large.child", {"size": input["size"], "seed": "kid"})
    await ctx.sleep("nap", 0.2)
    digest = await ctx.step("fingerprint", fingerprint, ctx.workflow_id, value)
    return {"rows": len(value["rows"]), "digest": digest}


@workflow("large.reader")
async def large_reader(ctx: Any, input: dict[str, Any]) -> str:
    """A child run given a large input: its fingerprint, by a step."""
    return await ctx.step("fingerprint", fingerprint, ctx.workflow_id, input["value"])


@workflow("large.sender")
async def large_sender(ctx: Any, input: dict[str, Any]) -> dict[str, str]:
    """Sends a large value as a child's input, then as its own next generation's
    input (continue-as-new), and returns both fingerprints."""
    if "value" in input:  # generation 1: the input came through the store
        mine = await ctx.step("fingerprint", fingerprint, ctx.workflow_id, input["value"])
        return {"child": input["child"], "next": mine}
    value = _value(int(input["size"]), "sent")
    child = await ctx.invoke("child", "large.reader", {"value": value})
    return await ctx.continue_as_new({"value": value, "child": child})


@workflow("large.waiter")
async def large_waiter(ctx: Any, input: dict[str, Any]) -> str:
    """A large step result, then a wait for the signal "go": the value must still
    be readable when the signal comes (after a dev stack restart, say)."""
    value = await ctx.step("make", make_value, ctx.workflow_id, int(input["size"]), "w")
    await ctx.wait_for_signal("go", "go")
    return await ctx.step("fingerprint", fingerprint, ctx.workflow_id, value)


LARGE = [
    large_value,
    large_twice,
    large_context,
    large_batched,
    large_child,
    large_parent,
    large_reader,
    large_sender,
    large_waiter,
]
