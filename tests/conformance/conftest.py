"""The conformance tier's fixture: one stack and one worker per suite module.

Each suite module lists its scenarios (`SCENARIOS`: requirement id -> workflow
name, input and, for the callback suites, the outside system's actions). The
module's `outcomes` fixture starts them all at once, then drives them on the
skipping clock: whenever every run has either ended or parked (on a timer that
is not yet due, or on a child run or a callback with no timer), it records
each run that parked anew (one round, the counterpart of one Lambda invocation
ending in a suspend). It then plays each parked run's next action (complete,
fail or heartbeat one of its callbacks, by name, through the HTTP API) and,
when no action is left to play, advances the clock past the latest wake time.
It stops when every run has ended. Tests then check one scenario each: status,
output, recorded operations, the rounds, child runs, and how many times each
step function really ran.

Each suite module also lists the workflows its worker registers (`WORKFLOWS`:
the `ALL` of its `workflows_<suite>.py`; the two callback suites share
`workflows_callback.py`) and, optionally, the plugins it registers (`PLUGINS`).
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

from orchestrator.client import Client
from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from orchestrator.local.aws import MotoServer
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Run, Status, StepKind, StepRecord, child_run_id
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
    children: dict[str, Run] = field(default_factory=dict)  # invoke op id -> child run
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # action, API reply

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
    if run.status == Status.WAITING and run.wake_at is None:
        return True  # on a child run or a callback with no timer
    return run.status in _PARKED and run.wake_at is not None and run.wake_at > now


# An outside system's action on a callback: ("succeed", name, result),
# ("fail", name, (error type, message)) or ("heartbeat", name).
Action = tuple[Any, ...]


def _play(client: Client, action: Action, ops: dict[str, StepRecord]) -> dict[str, Any] | None:
    """Play `action` on the run's callback of that name; None while it does not exist."""
    kind, name = action[0], action[1]
    token = next(
        (r.callback_id for r in ops.values() if r.kind == StepKind.CALLBACK and r.name == name),
        None,
    )
    if token is None:
        return None
    if kind == "succeed":
        return client.callback_succeed(token, action[2])
    if kind == "fail":
        return client.callback_fail(token, *action[2])
    assert kind == "heartbeat", action
    return client.callback_heartbeat(token)


def drive(
    stack: LocalStack,
    started: dict[str, Run],
    actions: dict[str, list[Action]] | None = None,
    timeout: float = 60.0,
) -> dict[str, Outcome]:
    clock = stack.clock
    assert isinstance(clock, SkippingClock)
    client = Client(stack.api_url)
    outcomes = {key: Outcome(run) for key, run in started.items()}
    todo = {key: list(a) for key, a in (actions or {}).items()}
    runs = dict(started)
    seen: dict[str, tuple[Any, ...]] = {}  # the parked state each run was last recorded in
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
        if not parked:
            break
        woke = played = False
        for key, r in parked.items():
            ops = {s.op_id: s for s in stack.store.steps(r.id)}
            state = (r.status, r.wake_at, r.epoch)  # a park follows a claim (epoch + 1)
            if seen.get(key) != state:
                seen[key] = state
                outcomes[key].rounds.append((r, ops))
            if todo.get(key):
                reply = _play(client, todo[key][0], ops)
                if reply is not None:
                    outcomes[key].replies.append((todo[key].pop(0)[0], reply))
                    woke = woke or bool(reply.get("woke"))
                    played = True
        due = [r.wake_at for r in parked.values() if r.wake_at is not None]
        if played or not due:
            # A run an action woke, the next action to play, or a child run to end.
            time.sleep(0.05 if woke else 0.2)
            continue
        clock.advance((max(due) - now) / 1000 + SETTINGS.sweep_grace_ms / 1000 + 1)
    for o in outcomes.values():
        o.run = stack.store.get(o.run.id)
        o.ops = {s.op_id: s for s in stack.store.steps(o.run.id)}
        for op_id, rec in o.ops.items():
            if rec.kind == StepKind.INVOKE:
                child = stack.store.get(child_run_id(o.run.id, op_id))
                if child is not None:
                    o.children[op_id] = child
    return outcomes


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, moto_server: MotoServer
) -> Iterator[dict[str, Outcome]]:
    """The module's scenarios, run at once on one stack and one worker."""
    scenarios: dict[str, tuple[Any, ...]] = request.module.SCENARIOS
    flows = request.module.WORKFLOWS
    actions = {key: list(s[2]) for key, s in scenarios.items() if len(s) > 2}
    moto_server.reset()
    stack = LocalStack(
        clock=SkippingClock(),
        settings=SETTINGS,
        endpoint_url=moto_server.url,
        background_interval=0.2,
        sweep_interval=1.0,
    ).start()
    try:
        with BackgroundWorker(
            flows,
            # No value bucket: the suite's semantics for a result too large to
            # record (3-11, 9-16: replay the children). With a bucket the engine
            # stores it in S3 instead (tests/functional/test_large_values.py).
            stack.settings.with_(bucket=""),
            clock=stack.clock,
            max_concurrent_workflows=2 * len(scenarios) + 1,  # and invoked children
            max_concurrent_steps=32,
            plugins=getattr(request.module, "PLUGINS", ()),
        ):
            with ThreadPoolExecutor(8) as pool:
                runs = pool.map(lambda s: stack.service.start(*s[:2])[0], scenarios.values())
                started = dict(zip(scenarios, runs, strict=True))
            result = drive(stack, started, actions, timeout=90)
    finally:
        stack.stop()
    yield result
