"""What flow control adds to a claim, measured in one run on the embedded stack.

    python -m benchmarks.flow_control [--claims 200]

Two task queues side by side: `default` without limits and `limited` with a
concurrency limit that never binds (so every claim succeeds). For each claim
the worker's path is timed from the first DynamoDB request to the lease:
unlimited, `claim` alone (the limits' GetItem is cached); limited, the
slot's `acquire` then the `claim`. The slot's `release` at the lease's end is
timed apart. DynamoDB requests are counted per path.

Absolute times are moto's on this machine (about 5-7 ms per request); compare
the two rows, which ran in the same process against the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import aioboto3

from orchestrator.clock import SYSTEM_CLOCK
from orchestrator.local import LocalStack
from orchestrator.model import Run, Status
from orchestrator.settings import Settings
from orchestrator.store import flow as f
from worker._flow import FlowControl
from worker._store import AsyncStore

SETTINGS = Settings(lease_seconds=30, task_queues=("default", "limited"))


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


async def _measure(stack: LocalStack, claims: int) -> dict[str, Any]:
    now = SYSTEM_CLOCK.now_ms()
    for queue in ("default", "limited"):
        for i in range(claims):
            run = Run(
                id=f"{queue}-{i}",
                name="bench",
                status=Status.PENDING,
                input="null",
                created_at=now,
                updated_at=now,
                task_queue=None if queue == "default" else queue,
            )
            stack.store.create(run)
    stack.ddb.update_item(
        **f.set_limits(
            stack.settings.table,
            "limited",
            max_concurrency=claims + 1,
            rate_limit=None,
            rate_period_ms=None,
            now=now,
        )
    )
    session = aioboto3.Session()
    kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
    calls = {"n": 0}

    def count(**_: Any) -> None:
        calls["n"] += 1

    out: dict[str, Any] = {}
    async with (
        session.client("dynamodb", **kw) as ddb,
        session.client("sqs", **kw) as sqs,
        session.client("scheduler", **kw) as scheduler,
    ):
        ddb.meta.events.register("before-send.dynamodb", count)
        store = AsyncStore(ddb, sqs, scheduler, stack.settings)
        flow = FlowControl(ddb, stack.settings.table, SYSTEM_CLOCK, 30_000)
        for queue in ("default", "limited"):
            await flow.acquire(queue, "warm-up")  # the limits' read, cached for 5 s
            claim_s, release_s = [], []
            before = calls["n"]
            for i in range(claims):
                t0 = time.perf_counter()
                go, slot = await flow.acquire(queue, f"{queue}-{i}")
                assert go
                await store.claim(
                    f"{queue}-{i}",
                    owner="bench",
                    now=SYSTEM_CLOCK.now_ms(),
                    lease_ms=30_000,
                    names=["bench"],
                    queues={queue: ["bench"]},
                )
                claim_s.append(time.perf_counter() - t0)
                if slot is not None:
                    t1 = time.perf_counter()
                    await flow.release(slot)
                    release_s.append(time.perf_counter() - t1)
                if i % 4 == 0:  # keep the config cached as a worker's would be
                    flow._config[queue] = (flow._config[queue][0], time.monotonic())
            out[queue] = {
                "requests_per_claim": (calls["n"] - before) / claims,
                "claim_p50_ms": _p50(claim_s),
                "release_p50_ms": _p50(release_s) if release_s else 0.0,
            }
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", type=int, default=200)
    args = parser.parse_args()
    with LocalStack(settings=SETTINGS, serve_api=False) as stack:
        result = asyncio.run(_measure(stack, args.claims))
    base, lim = result["default"], result["limited"]
    print(f"flow control per claim, {args.claims} claims per queue (moto, one run)")
    print(f"{'queue':<26}{'DynamoDB requests':>18}{'claim p50':>12}{'release p50':>13}")
    print(
        f"{'default (no limits)':<26}{base['requests_per_claim']:>18.2f}"
        f"{base['claim_p50_ms']:>10.1f}ms{'-':>13}"
    )
    print(
        f"{'limited (max_concurrency)':<26}{lim['requests_per_claim']:>18.2f}"
        f"{lim['claim_p50_ms']:>10.1f}ms{lim['release_p50_ms']:>11.1f}ms"
    )
    print(
        f"added per claim: {lim['requests_per_claim'] - base['requests_per_claim']:.2f} writes, "
        f"+{lim['claim_p50_ms'] - base['claim_p50_ms']:.1f} ms p50 before the lease "
        f"(+{lim['release_p50_ms']:.1f} ms p50 at its end, off the critical path of the next claim)"
    )


if __name__ == "__main__":
    main()
