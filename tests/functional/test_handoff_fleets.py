"""Four workers on `default`, each serving its own workflow names: every start
reaches a worker that serves it, and a message whose fleet is saturated costs
a bounded number of SQS requests, not a hot loop (worker/_handoff.py). The
latency of the hand-off is a benchmark (`python -m benchmarks.handoff`), not
asserted here."""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.handoff import NAMES, SqsLedger, watched_workers
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.resources import MAX_RECEIVE_COUNT
from tests.conftest import TEST_SETTINGS
from tests.helpers import wait_for, wait_status
from worker import workflow
from worker._handoff import AT_ONCE_MAX, HANDOFF_BACKOFF

# A lease no heartbeat misses on a loaded machine (the counts below assume one
# claim per run), and a sweeper grace longer than the test: only the hand-off
# moves the messages.
SETTINGS = TEST_SETTINGS.with_(lease_seconds=20, sweep_grace_ms=120_000)
RUNS = 24

_release = threading.Event()


def _held() -> str:
    _release.wait(60)
    return "released"


@workflow("held")
async def held(ctx: Any) -> str:
    return str(await ctx.step("hold", _held))


def test_four_workers_with_disjoint_names_claim_every_start_of_their_own(make_stack) -> None:
    stack = make_stack(settings=SETTINGS)
    shares = [list(NAMES[i::4]) for i in range(4)]
    ledger = SqsLedger()
    with watched_workers(stack, shares, ledger) as workers:
        ids = [stack.service.start(NAMES[i % len(NAMES)], None)[0].id for i in range(RUNS)]
        for run_id in ids:
            wait_status(stack, run_id, "completed", timeout=60)
        claimed = [bw.worker.stats["claimed"] for bw in workers]
    # Each worker claimed exactly the runs of its own names, each once.
    assert claimed == [RUNS // 4] * 4, claimed
    for run_id in ids:
        assert ledger.max_receives[run_id] < MAX_RECEIVE_COUNT  # never near the redrive


def test_a_message_for_a_saturated_worker_is_not_a_hot_loop(make_stack) -> None:
    stack = make_stack(settings=SETTINGS)
    _release.clear()
    ledger = SqsLedger()
    serving = BackgroundWorker(
        [held], stack.settings, clock=stack.clock, max_concurrent_workflows=1
    )
    try:
        serving.start()
        with watched_workers(stack, [list(NAMES[i::3]) for i in range(3)], ledger):
            assert serving.worker._store is not None
            ledger.watch(serving.worker._store.sqs)
            first, _ = stack.service.start("held", None)
            wait_status(stack, first.id, "running", timeout=30)
            assert serving.worker.busy == 1
            # The serving worker's only slot is taken: it does not receive. The second
            # run's message goes round the three others until it is re-sent twice.
            t0 = time.monotonic()
            waiting, _ = stack.service.start("held", None)
            wait_for(lambda: ledger.total(waiting.id, "send") >= 2, timeout=60)
            elapsed = time.monotonic() - t0
            counts = dict(ledger.counts[waiting.id])
            assert stack.store.get(waiting.id).status.value == "pending"
            _release.set()
            wait_status(stack, waiting.id, "completed", timeout=60)
    finally:
        _release.set()
        serving.stop()
    print(f"saturated: {counts} in {elapsed:.1f} s for two copies")
    # Per copy: at most AT_ONCE_MAX hand-backs at once, then the backoff, then the
    # re-send; the third copy may have started.
    per_copy = AT_ONCE_MAX + len(HANDOFF_BACKOFF) + 1
    assert counts["receive"] <= 3 * per_copy, counts
    assert counts["visible_at_once"] <= 3 * AT_ONCE_MAX, counts
    # A copy spends the backoff (4 s) hidden: a few requests a second, not a loop.
    assert (counts["receive"] + counts["visibility"]) / elapsed <= 2 * per_copy / 4, counts
    assert ledger.max_receives[waiting.id] < MAX_RECEIVE_COUNT
