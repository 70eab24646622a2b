"""The conformance tier's fixture: one stack and one worker per suite module.

Each suite module lists its scenarios (`SCENARIOS`: requirement id -> workflow
name and input). The module's `outcomes` fixture starts them all at once, then
drives them on the skipping clock: whenever every run has either ended or
parked on a timer that is not yet due, it records each parked run (one round,
the counterpart of one Lambda invocation ending in a suspend) and advances the
clock past the latest wake time. It stops when every run has ended. Tests then
check one scenario each: status, output, recorded operations, the rounds, and
how many times each step function really ran.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from orchestrator.local.aws import MotoServer
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Run, Status, StepRecord
from tests.conformance import workflows
from tests.conftest import TEST_SETTINGS

_PARKED = (Status.SLEEPING, Status.WAITING)

# A lease long enough that a loaded machine never loses one: a takeover would
# replay a run's workflow code once more and blur the execution counts.
SETTINGS = dataclasses.replace(TEST_SETTINGS, lease_seconds=30)


@dataclass
class Outcome:
    """One scenario's run, once it ended."""

    run: Run
    rounds: list[tuple[Run, dict[str, StepRecord]]] = field(default_factory=list)
    ops: dict[str, StepRecord] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.run.status.value

    @property
    def output(self) -> Any:
        return None if self.run.output is None else json.loads(self.run.output)

    @property
    def error_type(self) -> str | None:
        return None if self.run.error is None else self.run.error.type

    @property
    def parks(self) -> int:
        """How many times the run parked before it ended."""
        return len(self.rounds)

    def ran(self, label: str) -> int:
        """How many times the step function (or body) `label` really ran in this run."""
        return workflows.executions(self.run.id, label)

    def shape(self) -> list[tuple[str, str, str]]:
        """The recorded operations as (id, kind, name), in id order."""
        return [(r.op_id, r.kind.value, r.name) for r in sorted(self.ops.values(), key=_id_key)]


def _id_key(rec: StepRecord) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in rec.op_id.split(".")]


def _settled(run: Run, now: int) -> bool:
    if run.status.terminal:
        return True
    return run.status in _PARKED and run.wake_at is not None and run.wake_at > now


def drive(stack: LocalStack, started: dict[str, Run], timeout: float = 60.0) -> dict[str, Outcome]:
    clock = stack.clock
    assert isinstance(clock, SkippingClock)
    outcomes = {key: Outcome(run) for key, run in started.items()}
    runs = dict(started)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key, r in runs.items():  # a run that ended stays ended: no need to read it again
            if not r.status.terminal:
                runs[key] = stack.store.get(r.id)
        now = clock.now_ms()
        if not all(_settled(r, now) for r in runs.values()):
            time.sleep(0.2)
            continue
        parked = {key: r for key, r in runs.items() if not r.status.terminal}
        for key, r in parked.items():
            ops = {s.op_id: s for s in stack.store.steps(r.id)}
            outcomes[key].rounds.append((r, ops))
        if not parked:
            break
        latest = max(r.wake_at or now for r in parked.values())
        clock.advance((latest - now) / 1000 + SETTINGS.sweep_grace_ms / 1000 + 1)
    for o in outcomes.values():
        o.run = stack.store.get(o.run.id)
        o.ops = {s.op_id: s for s in stack.store.steps(o.run.id)}
    return outcomes


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, moto_server: MotoServer
) -> Iterator[dict[str, Outcome]]:
    """The module's scenarios, run at once on one stack and one worker."""
    scenarios: dict[str, tuple[str, Any]] = request.module.SCENARIOS
    moto_server.reset()
    stack = LocalStack(
        clock=SkippingClock(),
        settings=SETTINGS,
        endpoint_url=moto_server.url,
        background_interval=0.2,
    ).start()
    try:
        with BackgroundWorker(
            workflows.ALL,
            stack.settings,
            clock=stack.clock,
            max_concurrent_workflows=len(scenarios) + 1,
            max_concurrent_steps=32,
        ):
            with ThreadPoolExecutor(8) as pool:
                runs = pool.map(lambda s: stack.service.start(*s)[0], scenarios.values())
                started = dict(zip(scenarios, runs, strict=True))
            result = drive(stack, started, timeout=90)
    finally:
        stack.stop()
    yield result
