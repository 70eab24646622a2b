"""What durable calls return and record: step results encoded and decoded
(through the function's return annotation), signal outcomes, timer names,
marker checks. Which store errors are transient is `orchestrator.aws.is_transient`,
shared with the API."""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from orchestrator.aws import is_transient as _transient  # noqa: F401 (worker/_core.py)
from orchestrator.dispatch import schedule_name, timer_plan
from orchestrator.errors import PayloadTooLargeError, StepFailedError
from orchestrator.model import MAX_STEP_RESULT_BYTES, STEP_NAME_RE, StepRecord

from ._registry import adapter_for, to_jsonable


def _check_marker(marker: object) -> None:
    # Refused here, with a clear message, rather than by DynamoDB (item size).
    if not isinstance(marker, str) or not STEP_NAME_RE.fullmatch(marker):
        raise ValueError("a sleep or wait marker is 1 to 200 printable characters")


def _timer_name(workflow_id: str, pos: str, seq: int, now: int, wake_at: int) -> str | None:
    kind, _ = timer_plan(now, wake_at)
    return schedule_name(workflow_id, pos, seq) if kind == "schedule" else None


def _wait_outcome(rec: StepRecord) -> Any:
    if rec.timed_out or rec.result is None:
        return None
    return json.loads(rec.result)


def _result_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    target = fn.func if isinstance(fn, functools.partial) else fn
    try:
        return _adapter_for_function(target)
    except TypeError:  # unhashable callable: no cache
        return _return_adapter(target)


@functools.lru_cache(maxsize=1024)
def _adapter_for_function(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    return _return_adapter(fn)


def _return_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return None
    return adapter_for(hints.get("return", inspect.Parameter.empty))


def _encode_result(
    value: Any, adapter: TypeAdapter[Any] | None, limit: int = MAX_STEP_RESULT_BYTES
) -> str:
    try:
        if adapter is not None:
            text = adapter.dump_json(value).decode()
        else:
            text = json.dumps(to_jsonable(value), separators=(",", ":"), allow_nan=False)
    except Exception as e:
        raise TypeError(f"step result is not JSON-serializable: {e}") from e
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLargeError(f"step result is {size} bytes; the limit is {limit}")
    return text


def _outcome(rec: StepRecord, adapter: TypeAdapter[Any] | None) -> Any:
    if rec.error is not None:
        raise StepFailedError(rec.name, rec.error.type, rec.error.message, rec.error.traceback)
    text = rec.result if rec.result is not None else "null"
    if adapter is not None:
        return adapter.validate_json(text)
    return json.loads(text)
