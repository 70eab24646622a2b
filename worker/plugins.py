"""Plugins: hooks an application registers on a Worker to watch what its runs do.

    class StepTenant(Plugin):
        def attempt_start(self, attempt: Attempt) -> dict[str, str]:
            return {"tenant": attempt.workflow_id.split("-", 1)[0]}

    Worker(workflows=[...], plugins=[StepTenant()])

A plugin overrides the hooks it needs; the others do nothing. The worker calls
them in registration order:

- `invocation_start(inv)` when a claim starts running a run (and again, in the
  same claim, for the next generation of a run that continued as new), and
  `invocation_end(inv, status)` when that claim ends: `completed`, `failed`,
  `cancelled` (the run ended), `parked`, `continued`, `released` (a worker
  stopping), `lost` (the lease went to another claim) or `error` (the claim
  ended early; the run comes back after its lease).
- `operation_start(op)` when an operation starts for real, not on a replay of
  its record; `operation_end(op, status, error)` when this worker records its
  outcome (`succeeded` or `failed`): steps, child contexts, parallel, map and
  wait_for_condition. Sleeps, signal waits, callbacks and child runs end
  outside the worker (a timer, the API, the child), so they have a start only.
  `operation_replayed(op)` when a step's recorded outcome is returned on replay.
- `attempt_start(attempt)` and `attempt_end(attempt, outcome, error, seconds)`
  around each attempt of a step's function, in the same thread and context as
  the function: a context variable a hook sets is seen by the function (an auth
  header, a tenant), and the function's own log lines carry its fields.

`invocation_start` and `attempt_start` may return a mapping of log fields: they
join every log line of that claim or attempt (the worker's, and the
application's through a handler with `worker.configure_logging`).

Hooks run outside the workflow's replayed code and change no run: a hook that
raises is logged and skipped, and the run goes on as without it. They are plain
functions, called on the worker's event loop (attempt hooks of a sync step in
its thread): a slow hook slows every run on the worker, as a slow log handler
would. Keep them quick, and hand slow work (an HTTP export) to a thread or a
queue, as the OpenTelemetry and Prometheus clients do. The worker's own
Prometheus metrics and OpenTelemetry spans are plugins built on these hooks
(worker/_metrics.py, worker/_tracing.py).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.model import ErrorInfo

log = logging.getLogger("worker")

# How a claim ended (`Plugin.invocation_end`).
INVOCATION_STATUSES = (
    "completed",
    "failed",
    "cancelled",
    "parked",
    "continued",
    "released",
    "lost",
    "error",
)
TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class Invocation:
    """One claim of a run (or one generation of it, after a continue-as-new)."""

    workflow_id: str
    workflow: str  # the workflow's registered name
    epoch: int  # the claim's fencing token: 1 for the run's first claim
    generation: int  # continue-as-new: which history this claim writes
    first: bool  # this claim starts the generation: no history to replay
    worker_id: str
    continued: bool = False  # the claim goes on from the previous generation
    traceparent: str | None = None  # W3C trace context of the start request, if it sent one


@dataclass(frozen=True)
class Operation:
    """A durable operation: its id is its place in the run (`"3"`, `"3.1.0"`)."""

    workflow_id: str
    workflow: str
    kind: str  # step, sleep, wait, callback, invoke, context, parallel, map, condition
    op_id: str
    name: str


@dataclass(frozen=True)
class Attempt:
    """One attempt of a step's function (`attempt` counts from 1)."""

    workflow_id: str
    workflow: str
    op_id: str
    name: str
    attempt: int


class Plugin:
    """The hooks, each a no-op here. Subclass and override what you need."""

    def invocation_start(self, inv: Invocation) -> Mapping[str, Any] | None:
        return None

    def invocation_end(self, inv: Invocation, status: str) -> None:
        return None

    def operation_start(self, op: Operation) -> None:
        return None

    def operation_end(self, op: Operation, status: str, error: ErrorInfo | None) -> None:
        return None

    def operation_replayed(self, op: Operation) -> None:
        return None

    def attempt_start(self, attempt: Attempt) -> Mapping[str, Any] | None:
        return None

    def attempt_end(
        self, attempt: Attempt, outcome: str, error: BaseException | None, seconds: float
    ) -> None:
        return None


HOOKS = tuple(n for n in vars(Plugin) if not n.startswith("_"))


class Hooks:
    """The worker's plugins, called safely: what one raises is logged, and the
    others and the run go on."""

    def __init__(self, plugins: Iterable[Any] = ()) -> None:
        self.plugins = tuple(plugins)
        for p in self.plugins:
            if not any(callable(getattr(p, h, None)) for h in HOOKS):
                raise TypeError(
                    f"{p!r} is not a plugin: it has none of the hooks {', '.join(HOOKS)}"
                )
        # Only the hooks a plugin defines are called (not Plugin's no-ops).
        self._by_hook = {
            h: tuple(getattr(p, h) for p in self.plugins if _defines(p, h)) for h in HOOKS
        }

    def __bool__(self) -> bool:
        return bool(self.plugins)

    def has(self, hook: str) -> bool:
        """Whether any plugin defines `hook` (callers skip building its arguments)."""
        return bool(self._by_hook[hook])

    def call(self, hook: str, *args: Any) -> dict[str, Any]:
        """Call `hook` on every plugin; the log fields they returned, merged."""
        fields: dict[str, Any] = {}
        for fn in self._by_hook[hook]:
            try:
                out = fn(*args)
            except Exception:
                log.exception("plugin hook %s raised; ignored", _label(fn))
                continue
            if inspect.isawaitable(out):
                close = getattr(out, "close", None)
                if close is not None:
                    close()  # never awaited: no "coroutine was never awaited" warning
                log.error(
                    "plugin hook %s returned an awaitable; hooks are plain functions", _label(fn)
                )
            elif isinstance(out, Mapping):
                fields.update(out)
        return fields


def _defines(plugin: Any, hook: str) -> bool:
    fn = getattr(plugin, hook, None)
    return callable(fn) and getattr(type(plugin), hook, None) is not getattr(Plugin, hook)


def _label(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", repr(fn))
    return f"{type(owner).__name__}.{name}" if owner is not None else name
