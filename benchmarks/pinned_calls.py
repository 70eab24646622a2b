"""Count the AWS calls a pinned run costs against the same run unpinned.

    PYTHONPATH=. python -m benchmarks.pinned_calls

The workflow is one step, a one-hour sleep (a Scheduler timer) and one more
step, run once declared `versioning="auto"` and once `versioning="pinned"`,
each on a worker of its own with a build id. A `before-call` hook on the
worker's three clients counts calls per operation (its idle long polls are
left out: they do not depend on the run); the scheduler emulator's timer
delivery is the same for both. The difference is what pinning costs a run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from benchmarks.callback_calls import IDLE, Calls, wait_status
from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from orchestrator.local.stack import use_local_credentials
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.settings import Settings
from worker import workflow


def act(x: Any) -> Any:
    return x


def _ledger(name: str, versioning: str) -> Any:
    @workflow(name, versioning=versioning)
    async def ledger(ctx: Any) -> str:
        await ctx.step("open", act, 1)
        await ctx.sleep("nap", 3600)
        await ctx.step("close", act, 2)
        return "done"

    return ledger


def measure() -> dict[str, Counter[str]]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    use_local_credentials()
    settings = Settings(lease_seconds=30, poll_seconds=1, sweep_grace_ms=600_000)
    stack = LocalStack(clock=SkippingClock(), settings=settings, background_interval=5).start()
    out: dict[str, Counter[str]] = {}
    try:
        for versioning in ("auto", "pinned"):
            name = f"ledger-{versioning}"
            calls = Calls()
            with BackgroundWorker(
                [_ledger(name, versioning)], stack.settings, clock=stack.clock, build_id="b1"
            ) as bw:
                store = bw.worker._store
                asyncio.run_coroutine_threadsafe(asyncio.sleep(0), bw._loop).result()
                calls.watch(store._ddb, store._sqs, store._scheduler)
                calls.on = True
                run, _ = stack.service.start(name, None)
                wait_status(stack, run.id, "sleeping")
                stack.clock.advance(3601)  # the scheduler emulator fires the timer
                wait_status(stack, run.id, "completed")
                time.sleep(1.5)  # the batched message deletes go out
                calls.on = False
            out[versioning] = Counter(calls.counts)
    finally:
        stack.stop()
    return out


def main() -> None:
    results = measure()
    for label, counts in results.items():
        total = sum(v for k, v in counts.items() if k not in IDLE)
        print(f"\n{label}: {total} calls (long polls apart)")
        for op, n in sorted(counts.items()):
            if op not in IDLE:
                print(f"    {op:40} {n}")
    extra = results["pinned"] - results["auto"]
    print("\npinned minus auto:", dict(extra) or "nothing")


if __name__ == "__main__":
    main()
