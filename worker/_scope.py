"""Operation ids and the asyncio tasks of a run.

Every durable operation takes its id from the scope it runs in: the scope's id
plus the scope's counter, so an id depends on where an operation was started,
never on when it finished. Scopes:

- the root scope of the workflow function (ids "0", "1", ...: exactly the flat
  positions of runs recorded before ids had parts);
- a child scope per operation that runs code of its own (`run_in_child_context`
  at "3" runs its body in scope "3": ids "3.0", "3.1", ...; branch i of a batch
  at "5" runs in scope "5.i");
- a task scope per asyncio task that workflow code creates itself
  (`asyncio.gather`, `TaskGroup`, `create_task`), named by creation order in the
  creating scope: the k-th task created in scope "2" runs in scope "2.tk".

Task scopes are assigned by a task factory installed on the worker's loop: it
acts only on tasks created inside a run's workflow code (not inside a step
function, and not by the SDK's own store requests), and it leaves every other
task alone. Creation order is a property of the code, so a replay that makes
the same calls gets the same ids whatever order the branches finish in.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._state import RunState


@dataclass
class Scope:
    """Where operations are started: an id prefix, an operation counter and a
    counter of the tasks created in it."""

    id: str  # "" for the root scope
    ops: int = 0
    tasks: int = 0

    def op_id(self, n: int) -> str:
        return f"{self.id}.{n}" if self.id else str(n)

    def peek(self) -> str:
        return self.op_id(self.ops)

    def take(self) -> str:
        op = self.op_id(self.ops)
        self.ops += 1
        return op

    def task_scope(self) -> Scope:
        name = f"t{self.tasks}"
        self.tasks += 1
        return Scope(f"{self.id}.{name}" if self.id else name)


@dataclass
class TaskFrame:
    """What one task of a run has been told: a cancel is delivered once per task
    (at its next durable call, or where it is parked), and after it the task may
    run cleanup steps but not park again."""

    cancel_delivered: bool = False
    children: list[asyncio.Task[Any]] = field(default_factory=list)


run_var: contextvars.ContextVar[RunState | None] = contextvars.ContextVar("run", default=None)
scope_var: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("scope", default=None)
frame_var: contextvars.ContextVar[TaskFrame | None] = contextvars.ContextVar("frame", default=None)
# Set while code that is not workflow code runs in a run's task: a step function,
# a store request. Tasks created then get no scope.
outside_var: contextvars.ContextVar[bool] = contextvars.ContextVar("outside", default=False)
# Set in the context of a task whose scope the SDK chose itself (a batch branch).
_preassigned: contextvars.ContextVar[bool] = contextvars.ContextVar("preassigned", default=False)


def spawn(state: RunState, coro: Coroutine[Any, Any, Any], scope: Scope) -> asyncio.Task[Any]:
    """Start `coro` as a task of the run in `scope` (a batch branch)."""
    ctx = contextvars.copy_context()
    parent = ctx.get(frame_var)
    ctx.run(scope_var.set, scope)
    ctx.run(frame_var.set, TaskFrame(parent.cancel_delivered if parent else False))
    ctx.run(_preassigned.set, True)
    return asyncio.get_running_loop().create_task(coro, context=ctx)


def start_root(state: RunState, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Start the workflow function as the run's root task, in the root scope."""
    ctx = contextvars.copy_context()
    ctx.run(run_var.set, state)
    ctx.run(scope_var.set, state.root)
    ctx.run(frame_var.set, TaskFrame())
    ctx.run(outside_var.set, False)
    ctx.run(_preassigned.set, True)
    return asyncio.get_running_loop().create_task(coro, context=ctx)


def install_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Wrap the loop's task factory (once) so that tasks created by workflow code
    get a task scope and are tracked by their run."""
    previous = loop.get_task_factory()
    if getattr(previous, "_orchestrator_scopes", False):
        return

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        ctx: contextvars.Context | None = kwargs.pop("context", None)
        ctx = ctx.copy() if ctx is not None else contextvars.copy_context()
        state = ctx.get(run_var)
        if state is not None:
            if ctx.get(_preassigned):
                ctx.run(_preassigned.set, False)  # its own tasks get task scopes
            elif not ctx.get(outside_var) and ctx.get(scope_var) is not None:
                parent_scope = ctx.get(scope_var)
                assert parent_scope is not None
                parent = ctx.get(frame_var)
                ctx.run(scope_var.set, parent_scope.task_scope())
                ctx.run(frame_var.set, TaskFrame(parent.cancel_delivered if parent else False))
            else:
                state = None
        task: asyncio.Task[Any]
        if previous is not None:
            task = previous(loop, coro, context=ctx, **kwargs)  # type: ignore[call-arg, assignment]
        else:
            task = asyncio.Task(coro, loop=loop, context=ctx, **kwargs)
        if state is not None:
            state.track(task)
        return task

    factory._orchestrator_scopes = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)  # type: ignore[arg-type]
