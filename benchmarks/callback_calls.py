"""Count the AWS calls one callback costs, from its creation to its completion.

    PYTHONPATH=. python -m benchmarks.callback_calls

A `before-call` hook on each client counts calls per operation: the worker's
three clients (DynamoDB, SQS, Scheduler) and the API's own clients (the
completion runs the API route's code, `orchestrator.api.callbacks.complete`,
on clients that nothing else uses, so the local stack's sweeper is not
counted). Workflows of the same shape are measured, each completed after it
parked: a `wait_for_signal` (the baseline), a callback, a callback with a
heartbeat timeout that gets one heartbeat, and a callback that times out (the
run then fails with CallbackTimeoutError). The worker's idle long polls
(empty ReceiveMessage) and its registry beats are printed apart: they do not
depend on the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from typing import Any

from orchestrator.api import callbacks as api_callbacks
from orchestrator.api.service import Service
from orchestrator.aws import client as aws_client
from orchestrator.clock import SkippingClock
from orchestrator.dispatch import Dispatcher
from orchestrator.local import LocalStack
from orchestrator.local.stack import use_local_credentials
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.settings import Settings
from orchestrator.store import Store
from worker import workflow


@workflow("calls-signal")
async def by_signal(ctx: Any, input: Any) -> Any:
    return await ctx.wait_for_signal("wait", "done", timeout=86_400)


@workflow("calls-callback")
async def by_callback(ctx: Any, input: Any) -> Any:
    cb = await ctx.create_callback("cb", timeout=86_400, heartbeat_timeout=input)
    return await cb.result()


class Calls:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.on = False

    def hook(self, model: Any, **_: Any) -> None:
        if self.on:
            self.counts[f"{model.service_model.service_name}.{model.name}"] += 1

    def watch(self, *clients: Any) -> None:
        for c in clients:
            c.meta.events.register("before-call", self.hook)


def wait_status(stack: LocalStack, run_id: str, status: str) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = stack.store.get(run_id)
        if run.status.value == status:
            return run
        time.sleep(0.02)
    raise AssertionError(f"{run_id} is not {status}")


def measure() -> dict[str, dict[str, Counter[str]]]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    use_local_credentials()
    settings = Settings(lease_seconds=30, poll_seconds=1, sweep_grace_ms=60_000)
    stack = LocalStack(clock=SkippingClock(), settings=settings, background_interval=5).start()
    api_calls, worker_calls = Calls(), Calls()
    s = stack.settings
    service = Service(
        Store(aws_client("dynamodb", s), s.table, stack.clock),
        Dispatcher(aws_client("sqs", s), s, aws_client("scheduler", s)),
        stack.clock,
        s,
    )
    api_calls.watch(service.store.ddb, service.dispatcher._sqs, service.dispatcher._scheduler)
    out: dict[str, dict[str, Counter[str]]] = {}
    try:
        with BackgroundWorker([by_signal, by_callback], s, clock=stack.clock) as bw:
            store = bw.worker._store
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), bw._loop).result()
            worker_calls.watch(store._ddb, store._sqs, store._scheduler)
            for label in (
                "wait_for_signal",
                "callback",
                "callback + 1 heartbeat",
                "callback, timed out",
            ):
                api_calls.counts.clear()
                worker_calls.counts.clear()
                api_calls.on = worker_calls.on = True
                name = "calls-signal" if label == "wait_for_signal" else "calls-callback"
                beat = 3600 if "heartbeat" in label else None
                run, _ = service.start(name, beat)
                wait_status(stack, run.id, "waiting")
                if label == "wait_for_signal":
                    service.signal(run.id, "done", 1)
                elif "timed out" in label:
                    stack.clock.advance(86_400)  # the scheduler emulator fires the timer
                else:
                    token = next(x for x in stack.store.steps(run.id) if x.callback_id)
                    assert token.callback_id is not None
                    if beat:
                        api_callbacks.heartbeat(service, token.callback_id)
                    api_callbacks.complete(service, token.callback_id, {"ok": True, "result": 1})
                if "timed out" in label:
                    failed = wait_status(stack, run.id, "failed")
                    assert failed.error is not None
                    assert failed.error.type == "CallbackTimeoutError"
                else:
                    done = wait_status(stack, run.id, "completed")
                    assert json.loads(done.output or "null") == 1
                time.sleep(1.5)  # the batched message deletes go out
                api_calls.on = worker_calls.on = False
                out[label] = {
                    "api": Counter(api_calls.counts),
                    "worker": Counter(worker_calls.counts),
                }
    finally:
        stack.stop()
    return out


def main() -> None:
    results = measure()
    for label, sides in results.items():
        print(f"\n{label}")
        for side, counts in sides.items():
            total = sum(v for k, v in counts.items() if k not in IDLE)
            idle = ", ".join(f"{k} {counts[k]}" for k in IDLE if counts.get(k))
            print(f"  {side}: {total} calls" + (f" (apart: {idle})" if idle else ""))
            for op, n in sorted(counts.items()):
                if op not in IDLE:
                    print(f"    {op:40} {n}")


# The worker long-polls whatever the run does: its receives are shown apart.
IDLE = ("sqs.ReceiveMessage",)

if __name__ == "__main__":
    main()
