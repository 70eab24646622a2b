"""`python -m benchmarks.operation_calls`: the AWS requests one operation costs
from start to end, counted on the wire (botocore's before-send) in one process:
the API's start, the worker, the child run, everything but the sweeper (its
background loop is off) and idle long polls (listed apart).

    python -m benchmarks.operation_calls            # ctx.invoke of a one-step child
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import botocore.session

from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.settings import Settings
from worker import workflow

sent: Counter[str] = Counter()
_original = botocore.session.Session.__init__


def _count(event_name: str, **_: Any) -> None:
    _, service, op = event_name.split(".", 2)
    sent[f"{service}.{op}"] += 1


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original(self, *args, **kwargs)
    self.register("before-send", _count, unique_id="operation-calls")


def _one(run_id: str) -> str:
    return "done"


@workflow("calls-child")
async def calls_child(ctx: Any, input: Any) -> str:
    return await ctx.step("work", _one, ctx.workflow_id)


@workflow("calls-parent")
async def calls_parent(ctx: Any, input: Any) -> str:
    return await ctx.invoke("child", "calls-child", {})


@workflow("calls-plain")
async def calls_plain(ctx: Any, input: Any) -> str:
    return await ctx.step("work", _one, ctx.workflow_id)


def measure(name: str) -> Counter[str]:
    botocore.session.Session.__init__ = _init  # type: ignore[method-assign]
    settings = Settings(poll_seconds=1, lease_seconds=30)
    stack = LocalStack(clock=SkippingClock(), settings=settings, background_interval=3600).start()
    try:
        with BackgroundWorker(
            [calls_child, calls_parent, calls_plain], stack.settings, clock=stack.clock
        ) as bw:
            time.sleep(1.5)  # registration and first polls, then count from zero
            sent.clear()
            stack.service.start(name, {})
            runs = 2 if name == "calls-parent" else 1
            # The worker's own counters: reading the run here would count requests.
            while bw.worker.stats["completed"] + bw.worker.stats["failed"] < runs:
                time.sleep(0.05)
            time.sleep(1.0)  # the batched message deletes go out
            got = Counter(sent)
    finally:
        stack.stop()
        botocore.session.Session.__init__ = _original  # type: ignore[method-assign]
    return got


def main() -> int:
    out = {}
    for name in ("calls-plain", "calls-parent"):
        got = measure(name)
        polls = got.pop("sqs.ReceiveMessage", 0)
        registry = 0  # the worker registry beats every 20 s: not within a run of a second
        out[name] = {"requests": dict(sorted(got.items())), "receives (incl. idle polls)": polls}
        out[name]["total_without_receives"] = sum(got.values()) - registry
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
