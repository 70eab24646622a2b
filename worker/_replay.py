"""Replay check: recorded histories against local code, with nothing executed.

`orchestrator replay-check MODULE` runs each selected run's workflow function
through the worker's own replay code (the context, the operations, the id
scopes, the parker), with a `RunState` that is read-only:

- its history is loaded before (one Query per run) and nothing else is read
  (signal inboxes look empty);
- its clock stands still at the run's last recorded moment (the latest of its
  `updated_at` and its records' `recorded_at`): every sleep the run got past
  is over, and the sleep, retry delay or signal deadline it waits on now is
  still ahead, so the branch waits there, as the run does;
- a branch that reaches an operation with no record (and none under its id:
  a batch or child context still running has records only under it) stops
  there (`_core.enter`), before it runs anything; so does one that would
  write a record (`_core.record`); `_core.check_lease`,
  which precedes every step attempt and every record, refuses as a safety
  net, and the store refuses every write.

A run passes when its function returns, raises an ordinary exception (the
run's own failure), or every branch has stopped or waits. It fails when the
replay raises `NonDeterminismError`: the recorded operation differs from the
one the code makes there. The report names the operation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.errors import NonDeterminismError, WorkflowCancelledError
from orchestrator.model import Run, StepRecord, generation_scope
from orchestrator.payloads import ValueUnavailableError, is_pointer

from ._context import WorkflowContext, _current
from ._parking import Parker, cancel_tasks
from ._registry import WorkflowDefinition
from ._scope import Scope, install_task_factory, start_root
from ._state import ContinueAsNew, ReadOnlyReplayError, RunState

_FAR = 2**62


class _FixedClock:
    """The replay's clock stands still at the run's last recorded moment (see
    `replay`)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _ReadOnlyStore:
    """What a replayed run may ask of the store: its inbox looks empty; any
    write (or a read of a record it does not have) is refused."""

    async def inbox(self, workflow_id: str, name: str) -> list[Any]:
        return []

    def __getattr__(self, name: str) -> Any:
        async def refused(*args: Any, **kwargs: Any) -> Any:
            raise ReadOnlyReplayError(f"a replay check does not call the store's {name}")

        return refused


@dataclass
class RunVerdict:
    workflow_id: str
    name: str
    status: str
    ok: bool
    outcome: str  # "returned", "raised <type>", "stopped at <ops>", "waits", "timeout", ...
    operation: str | None = None  # the mismatching operation id
    message: str = ""
    replayed: int = 0  # records in the history
    seconds: float = 0.0  # replay time (the history read excluded)
    # Its history could not be read: a value it recorded in S3 is gone (expired,
    # or a dev stack that lost it). Not replayed, so neither passed nor failed.
    unreadable: bool = False


@dataclass
class Report:
    verdicts: list[RunVerdict] = field(default_factory=list)
    queries: int = 0  # history Queries (one per run unless a history is over 1 MB)
    read_units: float = 0.0
    read_seconds: float = 0.0  # summed over the history Queries (they overlap)
    replay_seconds: float = 0.0
    wall_seconds: float = 0.0  # reads and replays, end to end

    @property
    def failed(self) -> list[RunVerdict]:
        """The runs that would fail on this code (unreadable ones are not)."""
        return [v for v in self.verdicts if not v.ok and not v.unreadable]

    @property
    def unreadable(self) -> list[RunVerdict]:
        return [v for v in self.verdicts if v.unreadable]


async def replay(
    definition: WorkflowDefinition,
    run: Run,
    history: dict[str, StepRecord],
    *,
    timeout: float = 5.0,
) -> RunVerdict:
    """Replay one run's history with `definition`, read-only (see the module doc)."""
    started = time.perf_counter()
    verdict = RunVerdict(run.id, run.name, run.status.value, True, "", replayed=len(history))
    try:
        value = definition.parse_input(run.input)
    except ValueError as e:
        verdict.outcome, verdict.message = "input refused", str(e)[:300]
        return verdict
    state = RunState(
        workflow_id=run.id,
        name=run.name,
        epoch=run.epoch,
        signal_seq=run.signal_seq,
        lease_until=_FAR,
        history=dict(history),
        store=_ReadOnlyStore(),  # type: ignore[arg-type]
        clock=_FixedClock(max([run.updated_at, *(r.recorded_at for r in history.values())])),
        lease_ms=30_000,
        read_only=True,
        root=Scope(generation_scope(run.generation)),
        recorded_scopes={p for op in history for p in _ancestors(op)},
    )
    ctx = WorkflowContext(state)
    state.parker = Parker(state)

    async def root() -> Any:
        token = _current.set(ctx)
        try:
            return await (
                definition.fn(ctx, value) if definition.takes_input else definition.fn(ctx)
            )
        finally:
            _current.reset(token)

    install_task_factory(asyncio.get_running_loop())
    task = start_root(state, root())
    state.tasks.add(task)
    await asyncio.wait({task, state.parker.decided}, timeout=timeout, return_when="FIRST_COMPLETED")
    done = task.done()
    cancel_tasks(state.tasks)
    pending = {t for t in state.tasks if not t.done()}
    if pending:
        await asyncio.wait(pending, timeout=1)
    for t in state.tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved
    unwinding = state.unwinding
    exc = task.exception() if done and not task.cancelled() else None
    if isinstance(unwinding, NonDeterminismError) or isinstance(exc, NonDeterminismError):
        err = unwinding if isinstance(unwinding, NonDeterminismError) else exc
        verdict.ok = False
        verdict.outcome = "non-determinism"
        verdict.message = str(err)
        verdict.operation = _operation_of(str(err))
    elif isinstance(unwinding, ReadOnlyReplayError) or isinstance(exc, ReadOnlyReplayError):
        verdict.ok = False
        verdict.outcome = "replay error"
        verdict.message = str(unwinding or exc)
    elif isinstance(unwinding, ContinueAsNew):
        verdict.outcome = "continues as new"
    elif done and exc is None:
        verdict.outcome = "returned"
    elif done and isinstance(exc, WorkflowCancelledError):
        verdict.outcome = "cancelled"
    elif done and exc is not None:
        verdict.outcome = f"raised {type(exc).__name__}"
        verdict.message = str(exc)[:300]
    elif state.parker.decided.done():
        verdict.outcome = (
            "reaches new work at " + ", ".join(state.frontier) if state.frontier else "waits"
        )
    else:
        verdict.ok = False
        verdict.outcome = "timeout"
        verdict.message = (
            f"the replay did not settle within {timeout} s (awaiting non-durable work?)"
        )
    verdict.seconds = time.perf_counter() - started
    return verdict


def _ancestors(op_id: str) -> list[str]:
    parts = op_id.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def _operation_of(message: str) -> str | None:
    marker = " at operation "
    if marker not in message:
        return None
    return message.split(marker, 1)[1].split(",", 1)[0]


def load_history(
    ddb: Any, table: str, run: Run, report: Report, values: Any = None
) -> dict[str, StepRecord]:
    """One strongly consistent Query of the current generation (more only past
    1 MB), as a claim reads it; a value stored in S3 is read back through
    `values` (a `payloads.SyncValues`), as a claim resolves it."""
    from orchestrator.payloads import is_pointer
    from orchestrator.store import record_requests as rq
    from orchestrator.store.codec import records_from_items, records_from_last_batch

    req = {
        **rq.query_history(table, run.id, run.generation),
        "ReturnConsumedCapacity": "TOTAL",
    }
    out: dict[str, StepRecord] = {}
    for rec in records_from_last_batch(run.last_batch, run.generation):
        if values is not None and is_pointer(rec.result):
            rec = replace(rec, result=values.get(rec.result))
        out[rec.op_id] = rec
    while True:
        t0 = time.perf_counter()
        resp = ddb.query(**req)
        report.read_seconds += time.perf_counter() - t0  # from pool threads: += under the GIL
        report.queries += 1
        report.read_units += float(resp.get("ConsumedCapacity", {}).get("CapacityUnits", 0) or 0)
        for rec in records_from_items(resp.get("Items", []), attempt=run.redrive_count):
            if values is not None and is_pointer(rec.result):
                rec = replace(rec, result=values.get(rec.result))
            out[rec.op_id] = rec
        if "LastEvaluatedKey" not in resp:
            return out
        req = {**req, "ExclusiveStartKey": resp["LastEvaluatedKey"]}


async def check(
    definitions: dict[str, WorkflowDefinition],
    runs: Iterable[Run],
    ddb: Any,
    table: str,
    *,
    timeout: float = 5.0,
    read_concurrency: int = 8,
    values: Any = None,
) -> Report:
    """Replay every run whose workflow `definitions` has; the report in run order.
    Histories are read `read_concurrency` at a time (a Query's latency, not the
    replay, is what bounds the rate) while the replays run one by one."""
    report = Report()
    selected = [run for run in runs if run.name in definitions]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, read_concurrency)) as pool:
        loads = [pool.submit(load_history, ddb, table, run, report, values) for run in selected]
        for run, load in zip(selected, loads, strict=True):
            try:
                history = await asyncio.wrap_future(load)
                if values is not None and is_pointer(run.input):  # a child's offloaded input
                    run = replace(run, input=await asyncio.to_thread(values.get, run.input))
            except ValueUnavailableError as e:
                report.verdicts.append(
                    RunVerdict(
                        run.id,
                        run.name,
                        run.status.value,
                        False,
                        "unreadable",
                        message=f"its history cannot be read: {e.message}",
                        unreadable=True,
                    )
                )
                continue
            verdict = await replay(definitions[run.name], run, history, timeout=timeout)
            report.replay_seconds += verdict.seconds
            report.verdicts.append(verdict)
    report.wall_seconds = time.perf_counter() - t0
    return report
