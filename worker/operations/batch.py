"""`ctx.parallel` and `ctx.map`: batches of branches with completion rules.

A batch takes one operation id in its scope; branch `i` runs in its own task
in scope "<id>.<i>", so its operations get ids under it whatever order the
branches run or finish in. Branches start in index order, at most
`max_concurrency` at once. After each branch ends the completion rule decides
(Lambda durable execution's semantics):

- failures exceeding the tolerance (`tolerated_failure_count`, or
  `tolerated_failure_percentage` of all branches; strictly greater) end the
  batch with `failure_tolerance_exceeded`; with no completion config at all, the
  first failure does;
- `min_successful` successes end it with `min_successful_reached`;
- otherwise it ends when every branch has ended: `all_completed`.

Branches still running when the batch ends are cancelled; they count as
`started`. The decision (which indexes, each outcome, why it ended) is recorded
at the batch's id, so a replay returns the same BatchResult without running a
branch. A batch whose results are too large for one record keeps only the
decision (`replay_children`), and a replay runs the branches that ended
again (never those the batch cancelled), whose own operations replay from
their records.

A branch that parks keeps its slot; the run parks when every branch in flight
(and everything else in the run) waits, and the replay resumes each branch
where it was: the branches that had ended replay at once, in index order,
which frees the same slots, so the same branches are in flight again.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from orchestrator.errors import ChildContextError, PayloadTooLargeError
from orchestrator.model import MAX_INLINE_MAP_ITEMS, STEP_NAME_RE, ErrorInfo, StepKind, StepRecord

from .. import _core
from .._outcomes import _encode_result, _result_adapter
from .._scope import Scope, spawn
from .._state import error_info
from .nesting import nested_units

R = TypeVar("R")


class CompletionReason(StrEnum):
    ALL_COMPLETED = "all_completed"
    MIN_SUCCESSFUL_REACHED = "min_successful_reached"
    FAILURE_TOLERANCE_EXCEEDED = "failure_tolerance_exceeded"


class BatchItemStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STARTED = "started"  # still running when the batch ended (cancelled)


@dataclass(frozen=True)
class CompletionConfig:
    """When a batch may end before every branch has: see the module doc."""

    min_successful: int | None = None
    tolerated_failure_count: int | None = None
    tolerated_failure_percentage: float | None = None

    def __post_init__(self) -> None:
        if self.min_successful is not None and (
            not isinstance(self.min_successful, int) or self.min_successful < 1
        ):
            raise ValueError("min_successful must be a positive integer")
        if self.tolerated_failure_count is not None and (
            not isinstance(self.tolerated_failure_count, int) or self.tolerated_failure_count < 0
        ):
            raise ValueError("tolerated_failure_count must be an integer of at least 0")
        pct = self.tolerated_failure_percentage
        if pct is not None and (isinstance(pct, bool) or not 0 <= pct <= 100):
            raise ValueError("tolerated_failure_percentage must be between 0 and 100")


@dataclass(frozen=True)
class _Policy:
    total: int
    config: CompletionConfig | None

    def tolerance_exceeded(self, failed: int) -> bool:
        c = self.config
        if c is None or (
            c.min_successful is None
            and c.tolerated_failure_count is None
            and c.tolerated_failure_percentage is None
        ):
            return failed > 0
        if c.tolerated_failure_count is not None and failed > c.tolerated_failure_count:
            return True
        pct = c.tolerated_failure_percentage
        return pct is not None and self.total > 0 and failed * 100 / self.total > pct

    def decide(self, succeeded: int, failed: int) -> CompletionReason | None:
        if self.tolerance_exceeded(failed):
            return CompletionReason.FAILURE_TOLERANCE_EXCEEDED
        if succeeded + failed >= self.total:
            return CompletionReason.ALL_COMPLETED
        c = self.config
        if c is not None and c.min_successful is not None and succeeded >= c.min_successful:
            return CompletionReason.MIN_SUCCESSFUL_REACHED
        return None


@dataclass(frozen=True)
class BatchItem(Generic[R]):
    index: int
    status: BatchItemStatus
    result: R | None = None
    error: ChildContextError | None = None
    name: str | None = None  # a named branch's name, or the map's item_namer's


@dataclass(frozen=True)
class BatchResult(Generic[R]):
    """What a batch did: one item per branch started, in index order."""

    all: list[BatchItem[R]]
    completion_reason: CompletionReason
    total: int  # branches the batch was given

    def get_results(self) -> list[R]:
        """The results of the branches that succeeded, in index order."""
        return [i.result for i in self.all if i.status == BatchItemStatus.SUCCEEDED]  # type: ignore[misc]

    def get_errors(self) -> list[ChildContextError]:
        return [i.error for i in self.all if i.error is not None]

    def throw_if_error(self) -> None:
        """Raise the error of the first failed branch (by index), if any."""
        for item in self.all:
            if item.error is not None:
                raise item.error

    def succeeded(self) -> list[BatchItem[R]]:
        return [i for i in self.all if i.status == BatchItemStatus.SUCCEEDED]

    def failed(self) -> list[BatchItem[R]]:
        return [i for i in self.all if i.status == BatchItemStatus.FAILED]

    def started(self) -> list[BatchItem[R]]:
        return [i for i in self.all if i.status == BatchItemStatus.STARTED]

    @property
    def success_count(self) -> int:
        return len(self.succeeded())

    @property
    def failure_count(self) -> int:
        return len(self.failed())

    @property
    def started_count(self) -> int:
        return len(self.started())

    @property
    def total_count(self) -> int:
        """Branches that were started (not those never started)."""
        return len(self.all)

    @property
    def has_failure(self) -> bool:
        return self.failure_count > 0

    @property
    def status(self) -> str:
        """ "failed" if any branch failed, else "succeeded"."""
        return "failed" if self.has_failure else "succeeded"


@runtime_checkable
class BatchSerializer(Protocol):
    """Turns a batch's whole result into the text its record keeps, and back
    (`ctx.map(..., serializer=)`, `ctx.parallel(..., serializer=)`). The record
    also keeps each index's status (and a failure's error), which the engine
    needs to replay; the results are only in `dumps`'s text."""

    def dumps(self, result: BatchResult[Any]) -> str: ...

    def loads(self, text: str) -> BatchResult[Any]: ...


NESTING_MODES = ("flat", "nested")

Unit = tuple[Callable[..., Any], tuple[Any, ...]]


def check_batch_args(
    name: str,
    max_concurrency: int | None,
    completion: Any,
    nesting: str = "flat",
    serializer: Any = None,
    names: Sequence[str | None] | None = None,
) -> None:
    if not isinstance(name, str) or not STEP_NAME_RE.fullmatch(name):
        raise ValueError("a batch name is 1 to 200 printable characters")
    if nesting not in NESTING_MODES:
        raise ValueError(f"nesting {nesting!r} must be one of: {', '.join(NESTING_MODES)}")
    if serializer is not None and not isinstance(serializer, BatchSerializer):
        raise TypeError("serializer must have dumps(BatchResult) -> str and loads(str)")
    for n in names or ():
        if n is not None and (not isinstance(n, str) or not STEP_NAME_RE.fullmatch(n)):
            raise ValueError(f"a branch or item name is 1 to 200 printable characters: {n!r}")
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ValueError("max_concurrency must be a positive integer, or None for no limit")
    if completion is not None and not isinstance(completion, CompletionConfig):
        raise TypeError("completion must be a CompletionConfig")


async def run_batch(
    ctx: Any,
    kind: StepKind,
    name: str,
    units: Sequence[Unit],
    *,
    max_concurrency: int | None,
    completion: CompletionConfig | None,
    batched: bool = False,
    names: Sequence[str | None] | None = None,
    nesting: str = "flat",
    serializer: BatchSerializer | None = None,
) -> BatchResult[Any]:
    check_batch_args(name, max_concurrency, completion, nesting, serializer, names)
    names = list(names) if names is not None else [None] * len(units)
    s, op_id, rec = await _core.enter(kind.value)
    if batched and s.checkpoints is not None:
        s.checkpoints.scopes.add(op_id)  # its items' step results go into batches
    started = s.clock.now_ms()
    adapters = [_result_adapter(fn) for fn, _ in units]
    if nesting == "nested":
        units, names = nested_units(op_id, kind, units, names, adapters)
    only: list[int] | None = None
    if rec is not None:
        _core.check(s, rec, kind, name)
        if rec.resolved and not rec.replay_children:
            return _from_record(rec, adapters, len(units), names, serializer)
        if rec.resolved:  # replay_children: run the branches that ended again
            items = json.loads(rec.result or "{}").get("items", [])
            # Not those cancelled when the batch ended ("started"): they stay cancelled.
            only = [d["i"] for d in items if d["s"] != BatchItemStatus.STARTED.value]
    else:
        _core.started(s, kind, op_id, name)
    outcomes, reason = await _run(
        ctx, s, op_id, units, max_concurrency, _Policy(len(units), completion), only
    )
    if rec is not None and rec.resolved:
        body = json.loads(rec.result or "{}")
        return _live_result(outcomes, body, op_id, name, len(units), names)
    done = _decision_record(
        s, op_id, name, kind, outcomes, reason, adapters, started, names, serializer
    )
    winner = _core.ended(s, await _core.record(s, done))
    if winner.replay_children:
        body = json.loads(winner.result or "{}")
        return _live_result(outcomes, body, op_id, name, len(units), names)
    return _from_record(winner, adapters, len(units), names, serializer)


async def _branch(ctx: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    try:
        result = fn(ctx, *args)
        if inspect.isawaitable(result):
            result = await result
        return True, result
    except Exception as e:
        return False, e


async def _run(
    ctx: Any,
    s: Any,
    op_id: str,
    units: Sequence[Unit],
    max_concurrency: int | None,
    policy: _Policy,
    only: list[int] | None,
) -> tuple[dict[int, tuple[bool | None, Any]], CompletionReason]:
    order = list(range(len(units))) if only is None else sorted(only)
    cap = max_concurrency or len(order) or 1
    outcomes: dict[int, tuple[bool | None, Any]] = {}
    running: dict[asyncio.Task[tuple[bool, Any]], int] = {}
    succeeded = failed = 0
    reason: CompletionReason | None = policy.decide(0, 0) if not order else None
    cursor = 0
    escaping: BaseException | None = None
    try:
        while reason is None:
            while cursor < len(order) and len(running) < cap:
                i = order[cursor]
                cursor += 1
                fn, args = units[i]
                task = spawn(s, _branch(ctx, fn, args), Scope(f"{op_id}.{i}"))
                running[task] = i
                outcomes[i] = (None, None)  # started
            if not running:
                reason = CompletionReason.ALL_COMPLETED
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: running[t]):
                i = running.pop(task)
                if task.cancelled():
                    continue
                exc = task.exception()
                if exc is not None:
                    escaping = escaping or exc  # parking, a lost lease, a cancel
                    continue
                ok, value = task.result()
                outcomes[i] = (ok, value)
                succeeded += ok
                failed += not ok
            if escaping is not None:
                raise escaping
            reason = policy.decide(succeeded, failed)
            if only is not None and reason is not None and (running or cursor < len(order)):
                reason = None  # replaying a recorded decision: run every decided branch
    finally:
        if running:
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=5)
    return outcomes, reason


def _decision_record(
    s: Any,
    op_id: str,
    name: str,
    kind: StepKind,
    outcomes: dict[int, tuple[bool | None, Any]],
    reason: CompletionReason,
    adapters: list[Any],
    started: int,
    names: list[str | None],
    serializer: BatchSerializer | None,
) -> StepRecord:
    if serializer is not None:
        return _serialized_record(
            s, op_id, name, kind, outcomes, reason, started, names, serializer
        )
    items: list[dict[str, Any]] = []
    too_large = False  # one item's result over the limit: the record keeps no results
    for i in sorted(outcomes):
        ok, value = outcomes[i]
        if ok is None:
            items.append({"i": i, "s": BatchItemStatus.STARTED.value})
        elif ok:
            try:
                text = _encode_result(value, adapters[i], s.store.values.max_bytes)
            except PayloadTooLargeError:
                too_large, text = True, ""
            items.append({"i": i, "s": BatchItemStatus.SUCCEEDED.value, "r": text})
        else:
            items.append(
                {"i": i, "s": BatchItemStatus.FAILED.value, "e": error_info(value).as_dict()}
            )
    body = {"reason": reason.value, "items": items}
    return _decided(s, op_id, name, kind, body, started, too_large)


def _decided(
    s: Any,
    op_id: str,
    name: str,
    kind: StepKind,
    body: dict[str, Any],
    started: int,
    too_large: bool = False,
) -> StepRecord:
    """The decision record; one too large to keep (or with a result too large)
    keeps each index's status only, and a replay runs the ended branches again."""
    text = json.dumps(body, separators=(",", ":"))
    replay_children = too_large or len(text.encode()) > s.store.values.max_bytes
    if replay_children:
        slim = [{"i": d["i"], "s": d["s"]} for d in body["items"]]
        text = json.dumps({"reason": body["reason"], "items": slim}, separators=(",", ":"))
    return StepRecord(
        op_id,
        name,
        kind,
        s.epoch,
        s.clock.now_ms(),
        result=text,
        resolved=True,
        started_at=started,
        replay_children=replay_children,
    )


def _serialized_record(
    s: Any,
    op_id: str,
    name: str,
    kind: StepKind,
    outcomes: dict[int, tuple[bool | None, Any]],
    reason: CompletionReason,
    started: int,
    names: list[str | None],
    serializer: BatchSerializer,
) -> StepRecord:
    """The decision with the serializer's text for the whole result: each index's
    status (and a failure's error) besides, for the engine's replay."""
    live = _live_result(outcomes, _statuses(outcomes, reason), op_id, name, len(names), names)
    text = serializer.dumps(live)
    if not isinstance(text, str):
        raise TypeError(f"serializer.dumps returned {type(text).__name__}, not str")
    items: list[dict[str, Any]] = []
    for i in sorted(outcomes):
        ok, value = outcomes[i]
        status = _status(ok)
        entry: dict[str, Any] = {"i": i, "s": status.value}
        if ok is False:
            entry["e"] = error_info(value).as_dict()
        items.append(entry)
    body = {"reason": reason.value, "items": items, "serialized": text}
    return _decided(s, op_id, name, kind, body, started)


def _status(ok: bool | None) -> BatchItemStatus:
    if ok is None:
        return BatchItemStatus.STARTED
    return BatchItemStatus.SUCCEEDED if ok else BatchItemStatus.FAILED


def _statuses(
    outcomes: dict[int, tuple[bool | None, Any]], reason: CompletionReason
) -> dict[str, Any]:
    return {
        "reason": reason.value,
        "items": [{"i": i, "s": _status(outcomes[i][0]).value} for i in sorted(outcomes)],
    }


def _error(name: str, op_id: str, e: dict[str, Any]) -> ChildContextError:
    info = ErrorInfo(e.get("type", ""), e.get("message", ""), e.get("traceback", ""))
    return ChildContextError(name, info.type, info.message, info.traceback, op_id=op_id)


def _from_record(
    rec: StepRecord,
    adapters: list[Any],
    total: int,
    names: list[str | None] | None = None,
    serializer: BatchSerializer | None = None,
) -> BatchResult[Any]:
    body = json.loads(rec.result or "{}")
    if serializer is not None and "serialized" in body:
        return serializer.loads(body["serialized"])
    items: list[BatchItem[Any]] = []
    for d in body.get("items", []):
        i, status = d["i"], BatchItemStatus(d["s"])
        branch_id = f"{rec.op_id}.{i}"
        label = names[i] if names is not None and i < len(names) else None
        if status == BatchItemStatus.SUCCEEDED:
            adapter = adapters[i] if i < len(adapters) else None
            text = d.get("r", "null")
            value = adapter.validate_json(text) if adapter is not None else json.loads(text)
            items.append(BatchItem(i, status, result=value, name=label))
        elif status == BatchItemStatus.FAILED:
            error = _error(f"{rec.name}[{i}]", branch_id, d["e"])
            items.append(BatchItem(i, status, error=error, name=label))
        else:
            items.append(BatchItem(i, status, name=label))
    return BatchResult(items, CompletionReason(body["reason"]), total)


def _live_result(
    outcomes: dict[int, tuple[bool | None, Any]],
    body: dict[str, Any],
    op_id: str,
    name: str,
    total: int,
    names: list[str | None] | None = None,
) -> BatchResult[Any]:
    items: list[BatchItem[Any]] = []
    for d in body.get("items", []):
        i, status = d["i"], BatchItemStatus(d["s"])
        _, value = outcomes.get(i, (None, None))
        label = names[i] if names is not None and i < len(names) else None
        if status == BatchItemStatus.SUCCEEDED:
            items.append(BatchItem(i, status, result=value, name=label))
        elif status == BatchItemStatus.FAILED:
            info = error_info(value) if isinstance(value, BaseException) else ErrorInfo("", "")
            error = _error(f"{name}[{i}]", f"{op_id}.{i}", info.as_dict())
            items.append(BatchItem(i, status, error=error, name=label))
        else:
            items.append(BatchItem(i, status, name=label))
    return BatchResult(items, CompletionReason(body["reason"]), total)


def parallel_units(branches: Sequence[Any]) -> tuple[list[Unit], list[str | None]]:
    """The branches, each a function `branch(ctx)` or a named one, `(name, branch)`."""
    if isinstance(branches, (str, bytes, dict)) or not isinstance(branches, Sequence):
        raise TypeError("parallel takes a list of functions branch(ctx), or (name, branch) pairs")
    units: list[Unit] = []
    names: list[str | None] = []
    for b in branches:
        label = None
        if isinstance(b, tuple) and len(b) == 2 and isinstance(b[0], str):
            label, b = b
        if not callable(b):
            raise TypeError(
                "parallel takes a list of functions branch(ctx), or (name, branch) pairs"
            )
        units.append((b, ()))
        names.append(label)
    return units, names


def map_units(items: Sequence[Any], fn: Callable[..., Any]) -> list[Unit]:
    if not callable(fn):
        raise TypeError("map takes a function fn(ctx, item, index)")
    if isinstance(items, (str, bytes, dict)):
        raise TypeError("map takes a list of items")
    listed = list(items)
    if len(listed) > MAX_INLINE_MAP_ITEMS:
        raise ValueError(
            f"an inline map takes at most {MAX_INLINE_MAP_ITEMS} items, not {len(listed)}: "
            "for more, run each item as a child run with a distributed map, "
            "ctx.map(name, items, workflow='<workflow name>')"
        )
    return [(fn, (item, i)) for i, item in enumerate(listed)]
