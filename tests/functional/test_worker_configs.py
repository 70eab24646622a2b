"""Worker configurations as data, tried in combination (hypothesis) on the moto
server over HTTP, which checks expressions as DynamoDB does (an unused or
missing placeholder is a ValidationException).

Each example draws 2-3 workflows (declared task queue or none, auto or
pinned versioning, checkpoint "each" or "batched", with or without a durable
sleep between their two steps), 2-4 in-process workers (each registers a
subset of the workflows, polls the task queues it derives or a drawn list,
and has a build id or none), and 1-6 starts (a workflow on a task queue).
Then:

- every start that some worker serves (the workflow in its module, on a
  queue it polls, and the queue the workflow declares if it declares one)
  completes, and each segment of it (before and after the sleep) ran on a
  worker that serves it; a pinned run's segments ran on its own build;
- each worker claimed exactly the segments it ran (the lease outlasts the
  test, so no claim is lost and taken over): no claim of a run it does not
  serve, however briefly;
- a start that no worker serves stays pending with no claim recorded (epoch
  0) once the served runs are done;
- each worker's own claim request (as it sends it) is well formed and refused
  by its condition: for a run that does not exist, before any start, and for
  every run once the served ones are done.

The example budget is bounded for `make test`; the `slow` test draws more.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.store import requests as q
from tests.conftest import TEST_SETTINGS
from tests.helpers import wait_for
from worker import workflow

QUEUES = ("default", "gpu", "bulk")
BUILDS = ("b1", "b2")
# A lease no heartbeat misses on a loaded machine: a segment's claim is never
# lost and taken over, so claims can be counted exactly. Not longer: a message
# left in flight comes back after the lease plus 5 s (the queue's visibility
# timeout), and the waits below must outlast that.
SETTINGS = TEST_SETTINGS.with_(task_queues=QUEUES, lease_seconds=60)
WAIT_S = 150
NAP_S = 3600


@dataclass(frozen=True)
class Flow:
    queue: str | None  # @workflow(task_queue=)
    pinned: bool
    checkpoint: str  # "each" | "batched"
    sleeps: bool


@dataclass(frozen=True)
class Fleet:
    module: tuple[int, ...]  # indices of the workflows it registers
    polls: tuple[str, ...] | None  # task_queues=; None: the ones its workflows imply
    build: str | None


@dataclass(frozen=True)
class Config:
    flows: tuple[Flow, ...]
    workers: tuple[Fleet, ...]
    starts: tuple[tuple[int, str], ...]  # (workflow, task queue of the start)


def polled(cfg: Config, w: Fleet) -> list[str]:
    """The task queues a worker polls (the model of the documented rule)."""
    if w.polls is not None:
        return list(w.polls)
    flows = [cfg.flows[i] for i in w.module]
    declared = sorted({f.queue for f in flows if f.queue})
    return declared + (["default"] if any(f.queue is None for f in flows) else [])


def serves(cfg: Config, w: Fleet, flow: int, queue: str) -> bool:
    declared = cfg.flows[flow].queue
    return flow in w.module and queue in polled(cfg, w) and declared in (None, queue)


@st.composite
def configs(draw: st.DrawFn) -> Config:
    flows = tuple(
        draw(
            st.lists(
                st.builds(
                    Flow,
                    queue=st.sampled_from((None, "gpu", "bulk")),
                    pinned=st.integers(0, 3).map(lambda k: k == 3),  # a quarter pinned
                    checkpoint=st.sampled_from(("each", "batched")),
                    sleeps=st.booleans(),
                ),
                min_size=2,
                max_size=3,
            )
        )
    )
    indices = st.sampled_from(range(len(flows)))
    workers = []
    for _ in range(draw(st.integers(2, 4))):
        # Half the workers run the whole module (one codebase, several fleets).
        whole = draw(st.booleans())
        module = (
            tuple(range(len(flows))) if whole else tuple(sorted(draw(st.sets(indices, min_size=1))))
        )
        # Half the workers name their task queues (one or two of them), the
        # others poll the queues their workflows imply.
        explicit = draw(st.booleans())
        polls = (
            draw(st.lists(st.sampled_from(QUEUES), min_size=1, max_size=2, unique=True))
            if explicit
            else None
        )
        pinned = any(flows[i].pinned for i in module)
        build = draw(st.sampled_from(BUILDS if pinned else (None, *BUILDS)))
        w = Fleet(module, None if polls is None else tuple(polls), build)
        cfg = Config(flows, (w,), ())
        if not any(serves(cfg, w, i, queue) for i in module for queue in QUEUES):
            w = Fleet(module, None, build)  # a Worker refuses to serve nothing
        workers.append(w)
    starts = []
    for i in draw(st.lists(indices, min_size=1, max_size=6)):
        # Half the time on the queue the workflow declares (where it is served).
        home = flows[i].queue or "default"
        starts.append((i, draw(st.sampled_from((home, *QUEUES)))))
    return Config(flows, tuple(workers), tuple(starts))


def _act(label: str) -> str:
    return label


def _define(flow: Flow, name: str, label: str) -> Any:
    """The workflow as worker `label` registers it: each step returns the label
    of the worker that ran it, so the output tells who ran each segment."""

    @workflow(
        name,
        task_queue=flow.queue,
        versioning="pinned" if flow.pinned else "auto",
        checkpoint=flow.checkpoint,
    )
    async def run(ctx: Any, input: Any = None) -> dict[str, str]:
        opened = await ctx.step("open", _act, label)
        if flow.sleeps:
            await ctx.sleep("nap", NAP_S)
        closed = await ctx.step("close", _act, label)
        return {"open": opened, "close": closed}

    return run


class _ExpressionErrors(logging.Handler):
    """Requests the server refused as malformed, from any worker's log: a claim
    that can never succeed shows here long before a wait would time out."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        e = record.exc_info[1] if record.exc_info else None
        if isinstance(e, ClientError) and e.response["Error"]["Code"] == "ValidationException":
            with self._lock:
                self.seen.append(str(e))

    def check(self) -> None:
        with self._lock:
            assert not self.seen, f"the server refused a request: {self.seen[0]}"


_EXAMPLE = itertools.count()


def _check(stack: Any, cfg: Config) -> None:
    tag = f"x{next(_EXAMPLE)}"
    note(f"{cfg!r}")  # hypothesis prints it with a failing example
    names = [f"{tag}-f{i}" for i in range(len(cfg.flows))]
    labels = [f"{tag}-w{j}" for j in range(len(cfg.workers))]
    by_label = dict(zip(labels, cfg.workers, strict=True))
    errors = _ExpressionErrors()
    log = logging.getLogger("worker")
    log.addHandler(errors)
    workers = [
        BackgroundWorker(
            [_define(cfg.flows[i], names[i], label) for i in w.module],
            stack.settings,
            clock=stack.clock,
            build_id=w.build,
            task_queues=None if w.polls is None else list(w.polls),
        )
        for label, w in by_label.items()
    ]
    pool = ThreadPoolExecutor(len(workers))
    try:
        list(pool.map(BackgroundWorker.start, workers))
        for w in workers:  # each worker's claim request is well formed, before any start
            _refused(stack, f"{tag}-absent", w.worker)
        served: dict[str, tuple[int, str]] = {}
        unserved: list[str] = []
        for k, (i, queue) in enumerate(cfg.starts):
            run_id = f"{tag}-r{k}"
            stack.service.start(names[i], {}, run_id, task_queue=queue)
            if any(serves(cfg, w, i, queue) for w in cfg.workers):
                served[run_id] = (i, queue)
            else:
                unserved.append(run_id)

        def reached(*statuses: str) -> bool:
            errors.check()
            return all(stack.store.get(r).status.value in statuses for r in served)

        wait_for(lambda: reached("sleeping", "completed"), timeout=WAIT_S, interval=0.1)
        if any(stack.store.get(r).status.value == "sleeping" for r in served):
            # Nothing is running (every served run is parked or done): skipping
            # the clock expires no lease.
            stack.clock.advance(NAP_S + 1)
        wait_for(lambda: reached("completed"), timeout=WAIT_S, interval=0.1)
        errors.check()

        segments: Counter[str] = Counter()
        for run_id, (i, queue) in served.items():
            run = stack.store.get(run_id)
            out = json.loads(run.output)
            ran = [out["open"], out["close"]] if cfg.flows[i].sleeps else [out["open"]]
            if not cfg.flows[i].sleeps:
                assert out["close"] == out["open"], (run_id, out)  # one claim, one worker
            for label in ran:
                assert serves(cfg, by_label[label], i, queue), (run_id, label, out)
                segments[label] += 1
            if cfg.flows[i].pinned:
                assert {by_label[label].build for label in ran} == {run.build_id}, (run_id, out)
        claimed = {
            label: w.worker.stats.get("claimed", 0)
            for label, w in zip(labels, workers, strict=True)
        }
        assert claimed == {label: segments[label] for label in labels}

        for run_id in unserved:
            run = stack.store.get(run_id)
            assert (run.status.value, run.epoch) == ("pending", 0), run_id
        # Each worker's own claim request, as it sends it, is well formed and
        # refused by its condition: every served run is completed, every other
        # one is not this worker's (a worker whose claims the server refuses as
        # malformed fails here even if no message ever reached it).
        for w in workers:
            for run_id in [*served, *unserved]:
                _refused(stack, run_id, w.worker)
    finally:
        list(pool.map(BackgroundWorker.stop, workers))
        pool.shutdown()
        log.removeHandler(errors)


def _refused(stack: Any, run_id: str, w: Any) -> None:
    request = q.claim(
        stack.settings.table,
        run_id,
        owner=w.id,
        now=stack.clock.now_ms(),
        lease_ms=30_000,
        names=w._names,
        build_id=w.build_id,
        queues=w._served,
        pinned_names=w._pinned,
    )
    with pytest.raises(ClientError) as refused:
        stack.ddb.update_item(**request)
    code = refused.value.response["Error"]["Code"]
    assert code == "ConditionalCheckFailedException", str(refused.value)


# Derandomized and without an example database: CI runs the same examples every
# time. `make_stack` is function-scoped but a factory: each example calls it for
# a fresh stack (it resets the server and stops the previous stack), so nothing
# carries over between examples and hypothesis's health check does not apply.
COMMON: dict[str, Any] = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# The suite's 120 s timeout is for one scenario; this test is a dozen of them.
@pytest.mark.timeout(900)  # shrinking a failure alone may take 5 minutes
@settings(max_examples=8, **COMMON)
@given(cfg=configs())
def test_every_served_run_completes_and_no_worker_claims_another(make_stack, cfg) -> None:
    _check(make_stack(settings=SETTINGS), cfg)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@settings(max_examples=100, **COMMON)
@given(cfg=configs())
def test_worker_configurations_long(make_stack, cfg) -> None:
    _check(make_stack(settings=SETTINGS), cfg)
