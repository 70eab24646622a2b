"""`nesting="nested"` for `ctx.parallel` and `ctx.map`: each branch or item
records its own outcome.

A flat batch (the default) records one decision at its id; its branches have
no record of their own, only their operations do (`<id>.<i>.<k>`). A nested
batch also records each branch's outcome at the branch's id, `<id>.<i>` (kind
`branch`, named by the branch's name, the map's `item_namer`, the branch
function's qualified name, or `item-<i>`), as `run_in_child_context` records
its result. It costs one write per branch. What it buys: a replay that runs
branches again (a decision too large to keep its results, `replay_children`;
a batch interrupted before its decision) returns a branch's recorded outcome
instead of running it, and the name is checked on replay like any operation's.
A branch whose result is too large for a record keeps none, and runs again.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.errors import PayloadTooLargeError
from orchestrator.model import ErrorInfo, StepKind, StepRecord

from .. import _core
from .._names import branch_name
from .._outcomes import _encode_result
from .._state import error_info

Unit = tuple[Callable[..., Any], tuple[Any, ...]]


class RecordedBranchError(Exception):
    """A nested branch's recorded failure, raised again on replay with the
    recorded type and message (`error_info` reads it back as it was)."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.recorded_info = info


def nested_units(
    op_id: str,
    kind: StepKind,
    units: Sequence[Unit],
    names: Sequence[str | None],
    adapters: Sequence[Any],
) -> tuple[list[Unit], list[str | None]]:
    """Each unit wrapped to record its outcome at `<op_id>.<i>`; the names used."""
    wrapped: list[Unit] = []
    labels: list[str | None] = []
    for i, (fn, args) in enumerate(units):
        label = names[i] or (branch_name(fn, i) if kind == StepKind.PARALLEL else f"item-{i}")
        run = functools.partial(_run_nested, f"{op_id}.{i}", label, fn, adapters[i])
        wrapped.append((run, args))
        labels.append(label)
    return wrapped, labels


async def _run_nested(
    branch_id: str, label: str, fn: Callable[..., Any], adapter: Any, ctx: Any, *args: Any
) -> Any:
    s = _core.current()[0]
    rec = s.history.get(branch_id)
    if rec is not None and rec.resolved:
        _core.check(s, rec, StepKind.BRANCH, label)
        _core.replayed(s, rec)
        if rec.error is not None:
            raise RecordedBranchError(rec.error)
        text = rec.result or "null"
        return adapter.validate_json(text) if adapter is not None else json.loads(text)
    _core.started(s, StepKind.BRANCH, branch_id, label)
    started = s.clock.now_ms()
    try:
        value = fn(ctx, *args)
        if inspect.isawaitable(value):
            value = await value
    except Exception as e:
        failed = StepRecord(
            branch_id,
            label,
            StepKind.BRANCH,
            s.epoch,
            s.clock.now_ms(),
            error=error_info(e),
            resolved=True,
            started_at=started,
        )
        _core.ended(s, await _core.record(s, failed))
        raise
    try:
        text = _encode_result(value, adapter, s.store.values.max_bytes)
    except PayloadTooLargeError:
        return value  # too large to keep: a replay runs this branch again
    done = StepRecord(
        branch_id,
        label,
        StepKind.BRANCH,
        s.epoch,
        s.clock.now_ms(),
        result=text,
        resolved=True,
        started_at=started,
    )
    _core.ended(s, await _core.record(s, done))
    return value
