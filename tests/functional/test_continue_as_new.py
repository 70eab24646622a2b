"""`ctx.continue_as_new`: one run id, a fresh history per generation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orchestrator import Client
from orchestrator import resources as r
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.store import record_requests as rq
from tests.helpers import wait_status
from worker import workflow
from worker._registry import definition_of
from worker._replay import check


def tick(n: int) -> int:
    return n


@workflow("looper")
async def looper(ctx: Any, input: dict[str, int]) -> int:
    n = await ctx.step("tick", tick, input["n"])
    if n < input["until"]:
        return await ctx.continue_as_new({"n": n + 1, "until": input["until"]})
    return n


@workflow("batched_looper", checkpoint="batched")
async def batched_looper(ctx: Any, input: dict[str, int]) -> int:
    n = 0
    for i in range(3):
        n = await ctx.step(f"tick{i}", tick, input["n"] + i)
    if input["n"] < input["until"]:
        return await ctx.continue_as_new({"n": input["n"] + 1, "until": input["until"]})
    return n


def _loop(stack: Any, generations: int) -> None:
    with BackgroundWorker([looper], stack.settings, clock=stack.clock):
        t0 = time.monotonic()
        stack.service.start("looper", {"n": 1, "until": generations}, "loop")
        run = wait_status(stack, "loop", "completed", "failed", timeout=60 + generations / 5)
        elapsed = time.monotonic() - t0
        # A fork of the last generation: its ids ("~g.0") become a new run's ("0").
        fork = Client(stack.api_url).fork(
            "loop", from_operation="0", input={"n": 7, "until": 8}, id="loop-fork"
        )
        assert fork["forked_from"] == {"id": "loop", "operation": "0"}
        assert wait_status(stack, "loop-fork", "completed").output == "8"
    assert run.status.value == "completed", run.error
    assert run.output == str(generations) and run.generation == generations - 1
    print(f"{generations} generations in {elapsed:.1f} s")
    # The claim's Query reads the current generation only: one record, whatever
    # the table holds from the generations before.
    resp = stack.ddb.query(**rq.query_history(stack.settings.table, "loop", run.generation))
    assert [i["name"]["S"] for i in resp["Items"]] == ["tick"]
    # Each generation kept one record: constant history size.
    every = stack.ddb.query(
        TableName=stack.settings.table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
        ExpressionAttributeValues={":pk": {"S": "WF#loop"}, ":p": {"S": "STEP#"}},
        ConsistentRead=True,
        Select="COUNT",
    )
    assert every["Count"] == generations
    for g in (0, 1, generations // 2):
        (rec,) = stack.store.steps("loop", generation=g)
        assert rec.result == str(g + 1)
    # Ended generations expire by TTL; the current one does not.
    old = stack.ddb.query(**rq.query_history(stack.settings.table, "loop", 1))["Items"]
    assert r.TTL_ATTRIBUTE in old[0]
    assert r.TTL_ATTRIBUTE not in resp["Items"][0]
    # The replay check reads and replays the current generation.
    d = definition_of(looper)
    report = asyncio.run(check({d.name: d}, [run], stack.ddb, stack.settings.table))
    assert [(v.ok, v.outcome, v.replayed) for v in report.verdicts] == [(True, "returned", 1)]


def test_continue_as_new_keeps_one_generation_per_history(no_batch_writes) -> None:
    """Its TTL writes and the fork at the end use no BatchWriteItem, which no
    deployed role may call (`no_batch_writes`)."""
    _loop(no_batch_writes, 50)


@pytest.mark.slow
def test_continue_as_new_a_thousand_times(stack) -> None:
    _loop(stack, 1000)


def test_an_ended_generation_of_batched_results_expires_as_written(no_batch_writes) -> None:
    """Generation 0 flushed its three results as one batch item before it
    continued: that item gets the TTL, and nothing is written again singly."""
    stack = no_batch_writes
    with BackgroundWorker([batched_looper], stack.settings, clock=stack.clock):
        stack.service.start("batched_looper", {"n": 1, "until": 2}, "bloop")
        run = wait_status(stack, "bloop", "completed", "failed", timeout=60)
    assert run.status.value == "completed" and run.generation == 1, run.error
    old = stack.ddb.query(**rq.query_history(stack.settings.table, "bloop", 0))["Items"]
    assert [(i["kind"]["S"], r.TTL_ATTRIBUTE in i) for i in old] == [("batch", True)]
    assert [(s.name, s.result) for s in stack.store.steps("bloop", generation=0)] == [
        ("tick0", "1"),
        ("tick1", "2"),
        ("tick2", "3"),
    ]
    # The current generation ended with its results on the run item.
    assert [s.result for s in stack.store.steps("bloop")] == ["2", "3", "4"]
    assert run.last_batch is not None
