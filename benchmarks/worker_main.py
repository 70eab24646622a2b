"""One benchmark worker process: the project's `Worker` with the call hooks.

    python -m benchmarks.worker_main --role worker-0 --concurrency 10 \\
        --counts-out counts.json --ready-file ready

With BENCH_PROFILE=<dir> in the environment the process runs under cProfile
and writes <dir>/<role>.prof. Configuration comes from the environment (`LocalStack.exports()`), as for
`orchestrator worker`. On SIGTERM the worker drains (the Worker's own signal
handling); then the process writes its call counts and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from pathlib import Path

from .hooks import Recorder

OFFLOAD_BYTES_ENV = "BENCH_OFFLOAD_BYTES"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--counts-out", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    recorder = Recorder(args.role)
    recorder.install_everywhere()  # before any session exists

    from orchestrator.settings import Settings
    from worker import Worker

    from .workload import WORKFLOWS

    stats: dict[str, float] = {}
    settings = Settings.from_env()
    # The large-value phase (benchmarks/values.py) offloads values smaller than the
    # 1 KB floor that ORCHESTRATOR_OFFLOAD_BYTES accepts, so it sets the threshold
    # on the settings instead.
    if os.environ.get(OFFLOAD_BYTES_ENV):
        settings = settings.with_(offload_bytes=int(os.environ[OFFLOAD_BYTES_ENV]))

    async def run() -> None:
        worker = Worker(
            workflows=WORKFLOWS,
            max_concurrent_workflows=args.concurrency,
            settings=settings,
            shutdown_grace=10.0,
        )
        await worker.start()
        args.ready_file.write_text("ready")
        cpu0 = time.process_time()
        await worker.run_until_stopped()
        stats.update(worker.stats)
        stats["cpu_s"] = time.process_time() - cpu0  # type: ignore[assignment]

    profile_dir = os.environ.get("BENCH_PROFILE")  # a directory: cProfile the event loop
    if profile_dir:
        import cProfile

        with cProfile.Profile() as prof:
            asyncio.run(run())
        prof.dump_stats(str(Path(profile_dir) / f"{args.role}.prof"))
    else:
        asyncio.run(run())
    recorder.dump(args.counts_out, worker_stats=stats)


if __name__ == "__main__":
    main()
