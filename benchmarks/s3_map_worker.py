"""One worker process of `python -m benchmarks.s3_map`: the parent's (`--serve
parent`) or the batches' (`--serve batch`, on the `bulk` task queue), with the
call hooks; on SIGTERM it drains, then writes its call counts and its peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from .hooks import Recorder


def peak_rss_mb() -> float:
    """VmHWM of this process (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def workflows() -> dict[str, Any]:
    from worker import S3Items, workflow

    @workflow("bench.s3map.batch", task_queue="bulk")
    async def batch(ctx: Any, input: dict[str, Any]) -> dict[str, int]:
        items = input["items"]
        total = await ctx.step("sum", lambda: sum(item["v"] for item in items))
        return {"count": len(items), "sum": total}

    @workflow("bench.s3map.parent")
    async def parent(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
        result = await ctx.map(
            "items",
            S3Items(key=input["key"]),
            workflow="bench.s3map.batch",
            batch_size=input["batch_size"],
            task_queue="bulk",
        )
        count = total = 0
        async for item in result.items():
            count += item.result["count"]
            total += item.result["sum"]
        return {"count": count, "sum": total, "batches": result.total, "key": result.results_key}

    return {"parent": parent, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--counts-out", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--serve", choices=("parent", "batch"), required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    recorder = Recorder(args.role)
    recorder.install_everywhere()

    from orchestrator.settings import Settings
    from worker import Worker

    stats: dict[str, Any] = {}

    async def run() -> None:
        worker = Worker(
            workflows=[workflows()[args.serve]],
            max_concurrent_workflows=args.concurrency,
            settings=Settings.from_env(),
            shutdown_grace=10.0,
        )
        await worker.start()
        args.ready_file.write_text("ready")
        await worker.run_until_stopped()
        stats.update(worker.stats)

    asyncio.run(run())
    recorder.dump(args.counts_out, worker_stats=stats, role=args.role, peak_rss_mb=peak_rss_mb())


if __name__ == "__main__":
    main()
