"""`@workflow`: validates the function and attaches its definition. Registration
is explicit (`Worker(workflows=[...])`); the decorator has no side effects."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from orchestrator.model import CHECKPOINT_MODES, TASK_QUEUE_RE, VERSIONING, WORKFLOW_NAME_RE

_ATTR = "__workflow_definition__"


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    fn: Callable[..., Awaitable[Any]]
    takes_input: bool
    input_adapter: TypeAdapter[Any] | None
    output_adapter: TypeAdapter[Any] | None
    task_queue: str | None = None  # the one task queue workers serve it on (None: any they poll)
    versioning: str = "auto"  # "pinned": a run stays on the build that first claimed it
    checkpoint: str = "each"  # "batched": step results written several to an item

    @property
    def pinned(self) -> bool:
        return self.versioning == "pinned"

    def parse_input(self, text: str) -> Any:
        """The run's input as the workflow's annotation asks (pydantic validation)."""
        if self.input_adapter is None:
            return json.loads(text)
        return self.input_adapter.validate_json(text)

    def dump_output(self, value: Any) -> str:
        if self.output_adapter is not None:
            return self.output_adapter.dump_json(value).decode()
        return json.dumps(to_jsonable(value), separators=(",", ":"), allow_nan=False)


def to_jsonable(value: Any) -> Any:
    """Plain JSON types for a value that may hold pydantic models or dataclasses."""
    return TypeAdapter(Any).dump_python(value, mode="json")


def adapter_for(annotation: Any) -> TypeAdapter[Any] | None:
    if annotation in (inspect.Parameter.empty, None, type(None), Any):
        return None
    return TypeAdapter(annotation)


def workflow(
    name: str,
    *,
    task_queue: str | None = None,
    versioning: str = "auto",
    checkpoint: str = "each",
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Mark `async def fn(ctx, input)` (or `async def fn(ctx)`) as the workflow `name`.

    Annotations on `input` and the return value are validated and serialized
    with pydantic; without them, input and output are plain JSON.

    `task_queue`: workers run it only from that task queue (and poll that queue
    when it holds one of their workflows); start its runs with the same
    `task_queue`. Without it, a worker runs it from every queue it polls.

    `versioning`: "auto" (the default): any worker serving the name runs any
    of its runs, and code changes go through `ctx.patched`. "pinned": a run is
    only ever claimed by workers of the build id that first claimed it (its
    messages go to that build's own queue), until `orchestrator migrate` moves
    it; a worker serving a pinned workflow needs a build id.

    `checkpoint`: "each" (the default): every step's outcome is its own write,
    made before the workflow goes on. "batched": successful steps' results are
    written several to an item (when the item would pass 64 KB, before any other
    record, before the run parks or ends, and within
    `ORCHESTRATOR_CHECKPOINT_FLUSH_MS`, default 1000 ms), so a step costs its
    bytes rather than a write. If the worker dies, the steps whose results were
    not written yet run again: use it for cheap, idempotent steps.
    """
    if checkpoint not in CHECKPOINT_MODES:
        raise ValueError(f"checkpoint {checkpoint!r} must be one of: {', '.join(CHECKPOINT_MODES)}")
    if versioning not in VERSIONING:
        raise ValueError(f"versioning {versioning!r} must be one of: {', '.join(VERSIONING)}")
    if task_queue is not None and not TASK_QUEUE_RE.fullmatch(task_queue):
        raise ValueError(
            f"task queue {task_queue!r} must be a lowercase letter, then at most 39 lowercase "
            "letters, digits or '-'"
        )
    if not isinstance(name, str) or not WORKFLOW_NAME_RE.fullmatch(name):
        raise ValueError(
            f"workflow name {name!r} must start with a letter and hold at most 64 letters, "
            "digits, '_', '.' or '-'"
        )

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@workflow({name!r}) needs an `async def` function")
        params = list(inspect.signature(fn).parameters.values())
        if not 1 <= len(params) <= 2:
            raise TypeError(f"@workflow({name!r}) function takes (ctx) or (ctx, input)")
        hints = typing.get_type_hints(fn, include_extras=True)
        takes_input = len(params) == 2
        definition = WorkflowDefinition(
            name=name,
            fn=fn,
            takes_input=takes_input,
            input_adapter=adapter_for(hints.get(params[1].name, inspect.Parameter.empty))
            if takes_input
            else None,
            output_adapter=adapter_for(hints.get("return", inspect.Parameter.empty)),
            task_queue=task_queue,
            versioning=versioning,
            checkpoint=checkpoint,
        )
        setattr(fn, _ATTR, definition)
        return fn

    return decorate


def is_workflow(obj: Any) -> bool:
    """Whether `obj` is a function decorated with `@workflow`."""
    return isinstance(getattr(obj, _ATTR, None), WorkflowDefinition)


def definition_of(fn: Any) -> WorkflowDefinition:
    d = getattr(fn, _ATTR, None)
    if d is None:
        raise TypeError(f"{fn!r} is not decorated with @workflow(...)")
    return typing.cast(WorkflowDefinition, d)
