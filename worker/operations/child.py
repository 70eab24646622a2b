"""`ctx.run_in_child_context`: a named scope whose result is recorded as one unit.

The body runs in its own scope (its operations get ids under the context's
id). Its return value (or its error) is recorded at the context's id; once
recorded, a replay returns it (or raises it as ChildContextError) without
running the body again. A result too large for a record is not kept: the
record says `replay_children`, and a replay runs the body again, whose own
operations replay from their records (nothing runs twice).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from orchestrator.errors import ChildContextError, PayloadTooLargeError
from orchestrator.model import STEP_NAME_RE, ErrorInfo, StepKind, StepRecord

from .. import _core
from .._outcomes import _encode_result, _result_adapter
from .._scope import Scope, scope_var
from .._state import error_info


async def run_in_child_context(
    ctx: Any,
    name: str,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    if not isinstance(name, str) or not STEP_NAME_RE.fullmatch(name):
        raise ValueError("a child context name is 1 to 200 printable characters")
    if not callable(fn):
        raise TypeError("run_in_child_context needs a function fn(ctx, *args)")
    s, op_id, rec = await _core.enter("run_in_child_context")
    started = s.clock.now_ms()
    adapter = _result_adapter(fn)
    if rec is not None:
        _core.check(s, rec, StepKind.CONTEXT, name)
        if rec.resolved and not rec.replay_children:
            return decode(rec, adapter)
    ok, value = await run_scoped(ctx, op_id, fn, args, kwargs)
    done = outcome_record(s, op_id, name, StepKind.CONTEXT, ok, value, adapter, started)
    if rec is not None and rec.resolved:  # replay_children: the record stays as it is
        if not ok:
            raise _as_error(name, op_id, error_info(value))
        return value
    return decode(await _core.record(s, done), adapter, value)


async def run_scoped(
    ctx: Any,
    scope_id: str,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None = None,
) -> tuple[bool, Any]:
    """Run `fn(ctx, *args)` in scope `scope_id`: (True, value) or (False, exception).
    BaseExceptions (parking, a lost lease, a cancel) pass through."""
    token = scope_var.set(Scope(scope_id))
    try:
        result = fn(ctx, *args, **(kwargs or {}))
        if inspect.isawaitable(result):
            result = await result
        return True, result
    except Exception as e:
        return False, e
    finally:
        scope_var.reset(token)


def outcome_record(
    s: Any,
    op_id: str,
    name: str,
    kind: StepKind,
    ok: bool,
    value: Any,
    adapter: Any,
    started: int,
) -> StepRecord:
    now = s.clock.now_ms()
    rec = StepRecord(op_id, name, kind, s.epoch, now, resolved=True, started_at=started)
    if not ok:
        return replace(rec, error=error_info(value))
    try:
        return replace(rec, result=_encode_result(value, adapter, s.store.values.max_bytes))
    except PayloadTooLargeError:
        return replace(rec, replay_children=True)


_MISSING = object()


def decode(rec: StepRecord, adapter: Any, live: Any = _MISSING) -> Any:
    """The recorded outcome: the value (through the return adapter, the same on the
    first run and on replay) or ChildContextError. With `replay_children` the
    record holds no value: the live one is used."""
    if rec.error is not None:
        raise _as_error(rec.name, rec.op_id, rec.error)
    if rec.replay_children:
        return None if live is _MISSING else live
    import json

    text = rec.result if rec.result is not None else "null"
    return adapter.validate_json(text) if adapter is not None else json.loads(text)


def _as_error(name: str, op_id: str, info: ErrorInfo) -> ChildContextError:
    return ChildContextError(name, info.type, info.message, info.traceback, op_id=op_id)
