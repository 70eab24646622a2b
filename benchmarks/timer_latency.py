"""How late a parked run continues after its wake time, on the embedded stack.

    python -m benchmarks.timer_latency [--runs 20]

Delay path: sleeps of 2 s woken by SQS DelaySeconds, on the real clock.
Schedule path: one-day sleeps woken by EventBridge Scheduler schedules (fired
by the local emulator), on a skipping clock advanced past the wake time; the
lateness is measured from the moment the clock passed the wake time.
Lateness = the next step's start minus the recorded wake time.
"""

from __future__ import annotations

import argparse
import statistics
import time

from orchestrator.clock import SkippingClock, SystemClock
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.settings import Settings
from tests.workflows import sleeper

SETTINGS = Settings(lease_seconds=30, poll_seconds=20, sweep_grace_ms=30_000)


def _wait_done(stack: LocalStack, ids: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while any(stack.store.get(i).status.value != "completed" for i in ids):
        if time.monotonic() > deadline:
            raise TimeoutError("runs did not complete")
        time.sleep(0.05)


def _lateness(
    stack: LocalStack, ids: list[str], origin: dict[str, int] | None = None
) -> list[float]:
    out = []
    for i in ids:
        steps = stack.store.steps(i)
        wake = steps[1].wake_at
        assert wake is not None and steps[2].started_at is not None
        start = origin[i] if origin else wake
        out.append((steps[2].started_at - max(start, wake)) / 1000)
    return out


def delay_path(runs: int, interval: float) -> list[float]:
    with LocalStack(clock=SystemClock(), settings=SETTINGS, background_interval=interval) as stack:
        with BackgroundWorker([sleeper], stack.settings, max_concurrent_workflows=runs):
            ids = [stack.service.start("sleeper", {"seconds": 2})[0].id for _ in range(runs)]
            _wait_done(stack, ids)
        return _lateness(stack, ids)


def schedule_path(runs: int, interval: float) -> list[float]:
    clock = SkippingClock()
    with LocalStack(clock=clock, settings=SETTINGS, background_interval=interval) as stack:
        with BackgroundWorker(
            [sleeper], stack.settings, clock=clock, max_concurrent_workflows=runs
        ):
            ids = [stack.service.start("sleeper", {"seconds": 86_400})[0].id for _ in range(runs)]
            while (
                len(
                    stack.scheduler.list_schedules(GroupName=stack.settings.schedule_group)[
                        "Schedules"
                    ]
                )
                < runs
            ):
                time.sleep(0.05)
            latest_wake = max(stack.store.steps(i)[1].wake_at or 0 for i in ids)
            clock.advance(latest_wake - clock.now_ms() + 1)
            passed = clock.now_ms()
            _wait_done(stack, ids)
        return _lateness(stack, ids, {i: passed for i in ids})


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument(
        "--emulator-interval",
        type=float,
        default=1.0,
        help="scheduler emulator / sweeper period (s)",
    )
    args = ap.parse_args()
    for name, fn in (
        ("SQS delay (2 s sleeps)", delay_path),
        ("schedule (1 day sleeps)", schedule_path),
    ):
        late = sorted(fn(args.runs, args.emulator_interval))
        print(
            f"{name:26s} runs={len(late)}  lateness s: min {late[0]:.3f}  p50 {statistics.median(late):.3f}"
            f"  max {late[-1]:.3f}"
        )


if __name__ == "__main__":
    main()
