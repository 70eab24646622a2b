"""A distributed map of a million items read from S3, in batches.

    python -m benchmarks.s3_map [--items 1000000] [--batch 10000] [--workers 2]

The items are the lines of one JSON Lines object (`{"id": i, "v": i % 97}`)
in the value bucket of a fresh stack on the metering moto server
(benchmarks/meter_server.py). One worker process serves only the parent
workflow (`ctx.map(..., S3Items(key), workflow=..., batch_size=--batch,
task_queue="bulk")`, worker/operations/s3_map.py); `--workers` processes
serve only the batch workflow on the `bulk` task queue (each child sums its
batch in one step). The parent then reads the results object lazily and
checks the sum.

Reported: wall time from start to end, the parent worker's peak RSS (VmHWM
of its process; the target is under 300 MB), the children workers' peak RSS,
and what the map cost per item: DynamoDB capacity (every request after the
upload, from the meter), S3 and SQS requests, at the list prices of
benchmarks/prices.py. The sweeper does not run (the stack's background
interval is an hour). Reported, not asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from collections import Counter
from typing import Any

from .harness import Harness, _http
from .prices import PRICES, PRICES_AS_OF, REGION, s3_request_price

PARENT = "bench.s3map.parent"
KEY = "bench/items.jsonl"
TARGET_RSS_MB = 300


def _upload(stack: Any, items: int) -> int:
    buf = io.BytesIO()
    for i in range(items):
        buf.write(b'{"id":%d,"v":%d}\n' % (i, i % 97))
    data = buf.getvalue()
    stack.s3.put_object(Bucket=stack.settings.bucket, Key=KEY, Body=data)
    return len(data)


def _costs(meter: dict[str, Any], exclude: set[str]) -> dict[str, Any]:
    wru = rru = 0.0
    for who, ops in meter["ops"].items():
        if who in exclude:
            continue
        for st in ops.values():
            wru += st["wru_table"] + st["wru_index"]
            rru += st["rru"]
    s3: Counter[str] = Counter()
    sqs: Counter[str] = Counter()
    for who, ops in meter["other"].items():
        if who in exclude:
            continue
        for op, n in ops.items():
            if op.startswith("s3."):
                s3[op.removeprefix("s3.")] += n
            elif op.startswith("sqs."):
                sqs[op.removeprefix("sqs.")] += n
    dollars = {
        "dynamodb": wru * PRICES.dynamodb_wru + rru * PRICES.dynamodb_rru,
        "s3": sum(n * s3_request_price(op) for op, n in s3.items()),
        "sqs": sum(sqs.values()) * PRICES.sqs_request,
    }
    return {"wru": wru, "rru": rru, "s3": dict(s3), "sqs": dict(sqs), "dollars": dollars}


def run(items: int, batch: int, workers: int, concurrency: int) -> dict[str, Any]:
    from orchestrator.local import LocalStack
    from orchestrator.settings import Settings

    with Harness(poll_seconds=2, sweep_interval=3600) as harness:
        harness._reset()
        stack = LocalStack(
            settings=Settings(poll_seconds=2, lease_seconds=30, task_queues=("default", "bulk")),
            endpoint_url=harness.url,
            background_interval=3600,
        )
        stack.start()
        procs: list[Any] = []
        try:
            harness.log(f"uploading {items:,} items")
            size = _upload(stack, items)
            env = stack.exports()
            procs = harness._spawn(
                "benchmarks.s3_map_worker", ["parent"], 4, env, ["--serve", "parent"]
            )
            procs += harness._spawn(
                "benchmarks.s3_map_worker",
                [f"batch-{i}" for i in range(workers)],
                concurrency,
                env,
                ["--serve", "batch"],
            )
            _http(f"{harness.url}/_bench/reset", "POST", {})
            harness.log(f"map of {items:,} items in batches of {batch:,}")
            t0 = time.monotonic()
            run_, _ = stack.service.start(PARENT, {"key": KEY, "batch_size": batch})
            while True:
                current = stack.store.get(run_.id)
                if current.status.terminal:
                    break
                if time.monotonic() - t0 > harness.timeout:
                    raise RuntimeError(f"the map did not end within {harness.timeout:.0f} s")
                time.sleep(1.0)
            wall = time.monotonic() - t0
            meter = harness.meter()
            dumps = harness._terminate(procs)
            procs = []
        finally:
            if procs:
                harness._terminate(procs)
            stack.stop()
    if current.status.value != "completed":
        raise RuntimeError(f"the map ended {current.status.value}: {current.error}")
    out = json.loads(current.output or "{}")
    expected = sum(i % 97 for i in range(items))
    rss = {d["role"]: d["peak_rss_mb"] for d in dumps}
    costs = _costs(meter, exclude=set())
    total = sum(costs["dollars"].values())
    return {
        "items": items,
        "batch_size": batch,
        "children": -(-items // batch),
        "object_bytes": size,
        "wall_s": wall,
        "items_per_s": items / wall,
        "parent_peak_rss_mb": rss.get("parent"),
        "batch_workers_peak_rss_mb": {k: v for k, v in rss.items() if k != "parent"},
        "sum_ok": out.get("sum") == expected and out.get("count") == items,
        "output": out,
        "costs": costs,
        "dollars_per_million_items": total / items * 1e6,
    }


def render(r: dict[str, Any]) -> str:
    c = r["costs"]
    d = c["dollars"]
    lines = [
        f"Distributed map over S3: {r['items']:,} items ({r['object_bytes'] / 1e6:.1f} MB of JSON "
        f"Lines), batches of {r['batch_size']:,} ({r['children']} children)",
        f"  wall {r['wall_s']:.1f} s ({r['items_per_s']:,.0f} items/s); result sum "
        + ("correct" if r["sum_ok"] else "WRONG"),
        f"  parent worker peak RSS {r['parent_peak_rss_mb']:.0f} MB (target < {TARGET_RSS_MB} MB); "
        "batch workers "
        + ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(r["batch_workers_peak_rss_mb"].items())),
        f"  DynamoDB {c['wru']:.0f} WRU, {c['rru']:.0f} RRU; S3 "
        + ", ".join(f"{op} {n}" for op, n in sorted(c["s3"].items()))
        + "; SQS "
        + ", ".join(f"{op} {n}" for op, n in sorted(c["sqs"].items())),
        f"  cost: DynamoDB ${d['dynamodb']:.6f}, S3 ${d['s3']:.6f}, SQS ${d['sqs']:.6f}; "
        f"${r['dollars_per_million_items']:.4f} per million items "
        f"(list prices as of {PRICES_AS_OF}, {REGION}; S3 storage and compute not included)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="processes serving the batches")
    parser.add_argument("--concurrency", type=int, default=8, help="runs at once per batch worker")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    result = run(args.items, args.batch, args.workers, args.concurrency)
    print(
        f"Benchmark on {platform.node()} ({platform.machine()}, Python {platform.python_version()})"
    )
    print(
        f"command: python -m benchmarks.s3_map {' '.join(sys.argv[1:] if argv is None else argv)}"
    )
    print(render(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if result["sum_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
