"""What a replay check costs, and what continue-as-new saves, on the embedded stack.

    python -m benchmarks.versioning replay [--runs 200] [--steps 10]
    python -m benchmarks.versioning continue [--iterations 10000] [--every 100]

replay: starts `--runs` runs of a workflow that records `--steps` steps and then
waits for a signal (in flight, as after a deploy), then replays them all with
`worker._replay.check` (what `orchestrator replay-check` runs): history
Queries, read units, and time per run for the read and for the replay.

continue: an entity loop whose iterations each record a step and a signal
wait, so that every iteration is a claim and every claim Queries the
history. Runs `--sample` real iterations on the engine to take the records'
exact shapes, then writes histories of the sizes a loop of `--iterations`
reaches (2 records per iteration so far; up to `--measure` iterations, as
moto's Query slows down on large partitions) and measures the claim's Query
on them: items, bytes, read units (moto reports none: computed from the item
sizes by DynamoDB's rules, 4 KB per strongly consistent unit) and time. The
loop's totals, without continue-as-new and with it every `--every`
iterations, are computed from the measured bytes per iteration.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

from orchestrator.clock import SystemClock
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.settings import Settings
from orchestrator.store import record_requests as rq
from worker import workflow
from worker._registry import definition_of
from worker._replay import check

SETTINGS = Settings(lease_seconds=30, poll_seconds=1, sweep_grace_ms=30_000)


def act(n: int) -> int:
    return n


@workflow("inflight")
async def inflight(ctx: Any, input: dict[str, int]) -> None:
    for i in range(input["steps"]):
        await ctx.step(f"step-{i}", act, i)
    await ctx.wait_for_signal("approval", "approve")


@workflow("entity")
async def entity(ctx: Any, input: dict[str, int]) -> int:
    total = input.get("total", 0)
    for i in range(input["iterations"]):
        event = await ctx.wait_for_signal(f"event-{i}", "event")
        total = await ctx.step(f"apply-{i}", act, total + int(event or 0))
    return int(total)


def _wait(stack: LocalStack, ids: list[str], status: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    for i in ids:
        while stack.store.get(i).status.value != status:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{i} is not {status}")
            time.sleep(0.05)


def replay(runs: int, steps: int) -> None:
    with LocalStack(clock=SystemClock(), settings=SETTINGS, background_interval=1.0) as stack:
        ids = [f"r{i}" for i in range(runs)]
        with BackgroundWorker([inflight], stack.settings, max_concurrent_workflows=20):
            for i in ids:
                stack.service.start("inflight", {"steps": steps}, i)
            _wait(stack, ids, "waiting")
        d = definition_of(inflight)
        listed = [stack.store.get(i) for i in ids]
        report = asyncio.run(check({d.name: d}, listed, stack.ddb, stack.settings.table))
        wall = report.wall_seconds
    n = len(report.verdicts)
    assert n == runs and not report.failed
    records = sum(v.replayed for v in report.verdicts)
    print(f"replay check: {n} runs, {records} records ({records / n:.0f} per run)")
    print(f"  history Queries: {report.queries} ({report.queries / n:.2f} per run)")
    print(
        f"  time per run: read {1000 * report.read_seconds / n:.2f} ms, "
        f"replay {1000 * report.replay_seconds / n:.2f} ms; "
        f"{n / wall:.0f} runs/s end to end, {n / report.replay_seconds:.0f} runs/s replay only"
    )


# --- continue-as-new -----------------------------------------------------------------------------
def _size(value: dict[str, Any]) -> int:
    """DynamoDB's size of an attribute value (bytes)."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = len(v.strip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "BOOL" or kind == "NULL":
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(_size(x) + 1 for x in v)
    return len(str(v))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + _size(v) for k, v in item.items())


def _sample_records(stack: LocalStack, iterations: int) -> list[dict[str, Any]]:
    """Run the entity loop for real; return its step items (one iteration's pair
    is the shape every iteration writes)."""
    with BackgroundWorker([entity], stack.settings, max_concurrent_workflows=1):
        stack.service.start("entity", {"iterations": iterations}, "sample")
        for i in range(iterations):
            _wait(stack, ["sample"], "waiting")
            stack.service.signal("sample", "event", i)
        _wait(stack, ["sample"], "completed")
    resp = stack.ddb.query(**rq.query_history(stack.settings.table, "sample"))
    return list(resp["Items"])


def _claim_query(stack: LocalStack, run_id: str) -> tuple[int, int, int, float]:
    """(items, bytes, queries, seconds) of one claim's history Query."""
    req = rq.query_history(stack.settings.table, run_id)
    items = size = queries = 0
    t0 = time.perf_counter()
    while True:
        resp = stack.ddb.query(**req)
        queries += 1
        items += resp["Count"]
        size += sum(item_size(i) for i in resp["Items"])
        if "LastEvaluatedKey" not in resp:
            return items, size, queries, time.perf_counter() - t0
        req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}


def _grow(stack: LocalStack, run_id: str, pair: list[dict[str, Any]], start: int, end: int) -> None:
    """Write iterations [start, end) of a history shaped like `pair`."""
    puts = []
    for i in range(start, end):
        for n, proto in enumerate(pair):
            item = dict(proto)
            item["pk"] = {"S": f"WF#{run_id}"}
            op = 2 * i + n
            item["sk"] = {"S": f"STEP#{op:06d}"}
            item["op"] = {"S": str(op)}
            puts.append({"PutRequest": {"Item": item}})
    for k in range(0, len(puts), 25):
        pending: dict[str, Any] = {stack.settings.table: puts[k : k + 25]}
        while pending:
            pending = stack.ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def continue_as_new(iterations: int, every: int, sample: int, points: int, measure: int) -> None:
    with LocalStack(clock=SystemClock(), settings=SETTINGS, background_interval=5.0) as stack:
        records = _sample_records(stack, sample)
        pair = records[-2:]  # the last iteration's wait and step
        per_iteration = sum(item_size(i) for i in pair)
        print(
            f"one iteration writes {len(pair)} records, {per_iteration} bytes "
            f"(measured on a {sample}-iteration run)"
        )
        # Per-claim reads at sampled history sizes, then summed over the loop.
        # moto's Query is slow on large partitions (seconds for a few hundred
        # items), so the claim's Query is measured up to `measure` iterations; the
        # loop's totals are computed from the measured bytes per iteration.
        top = min(iterations, measure)
        marks = sorted({max(1, round(top * k / points)) for k in range(1, points + 1)})
        measured: dict[int, tuple[int, int, int, float]] = {}
        done = 0
        for m in marks:
            _grow(stack, "loop", pair, done, m)
            done = m
            measured[m] = _claim_query(stack, "loop")
        print(
            f"{'claim at iteration':>20} {'items':>7} {'KB':>8} {'RCU':>6} {'queries':>8} {'ms':>8}"
        )
        for m, (items, size, queries, secs) in measured.items():
            rcu = math.ceil(size / 4096)
            print(
                f"{m:>20} {items:>7} {size / 1024:>8.1f} {rcu:>6} {queries:>8} {1000 * secs:>8.1f}"
            )
        # Reads over the whole loop: claim i reads the records of iterations < i.
        without = sum(math.ceil(i * per_iteration / 4096) or 1 for i in range(iterations))
        with_can = sum(
            math.ceil((i % every) * per_iteration / 4096) or 1 for i in range(iterations)
        )
        worst_with = math.ceil((every - 1) * per_iteration / 4096) or 1
        last_bytes = (iterations - 1) * per_iteration
        last_rcu = math.ceil(last_bytes / 4096)
        last_pages = math.ceil(last_bytes / (1024 * 1024))
        print(
            f"\n{iterations} iterations, one claim each:\n"
            f"  without continue-as-new: {without:,} RCU in all, {without / iterations:.1f} per "
            f"claim on average; the last claim reads {last_bytes / 1e6:.2f} MB: {last_rcu} RCU "
            f"in {last_pages} Query pages\n"
            f"  continue-as-new every {every}: {with_can:,} RCU in all, "
            f"{with_can / iterations:.2f} per claim, at most {worst_with} per claim "
            f"({without / with_can:.0f}x fewer reads); it writes one more unit per "
            f"generation (the continue) and one per record to set the ended generation's "
            f"TTL: {iterations // every + 2 * iterations:,} WRU over the loop"
        )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.versioning")
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("replay")
    r.add_argument("--runs", type=int, default=200)
    r.add_argument("--steps", type=int, default=10)
    c = sub.add_parser("continue")
    c.add_argument("--iterations", type=int, default=10_000)
    c.add_argument("--every", type=int, default=100)
    c.add_argument("--sample", type=int, default=3)
    c.add_argument("--points", type=int, default=4)
    c.add_argument("--measure", type=int, default=400)
    args = p.parse_args()
    if args.what == "replay":
        replay(args.runs, args.steps)
    else:
        continue_as_new(args.iterations, args.every, args.sample, args.points, args.measure)


if __name__ == "__main__":
    main()
