"""Workflows and plugins of the conformance tier's plugin suite (requirements
10-x): hooks an application registers on the worker.

The suite's plugins write one JSON-like record per hook, as the requirements'
plugins log `{"plugin": "CONFPLUGIN", "hook": "invocation-start", ...}` lines,
each stamped with the run id the invocation hook received (the requirements'
`durableExecutionArn`). `records(run_id)` returns them in the order they were
written. The faulty plugin records, then raises, from every hook.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from worker import RetryPolicy, workflow
from worker.plugins import Attempt, Invocation, Operation, Plugin

from .workflows import PARK, fail, greet, ran

_lock = threading.Lock()
_records: list[dict[str, Any]] = []


def records(run_id: str, plugin: str | None = None) -> list[dict[str, Any]]:
    with _lock:
        return [
            r for r in _records if r["run"] == run_id and (plugin is None or r["plugin"] == plugin)
        ]


def _write(record: dict[str, Any]) -> None:
    with _lock:
        _records.append(record)


class Recording(Plugin):
    """Records every hook, as the requirements' CONFPLUGIN logs them; operation
    and attempt hooks only for steps (the requirements filter to step-type
    operations)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def _write(self, run: str, hook: str, **fields: Any) -> None:
        _write({"plugin": self.label, "hook": hook, "run": run, **fields})

    def invocation_start(self, inv: Invocation) -> None:
        self._write(inv.workflow_id, "invocation-start", first=inv.first)

    def invocation_end(self, inv: Invocation, status: str) -> None:
        self._write(inv.workflow_id, "invocation-end", status=status)

    def operation_start(self, op: Operation) -> None:
        if op.kind == "step":
            self._write(op.workflow_id, "operation-start", op=op.op_id)

    def operation_end(self, op: Operation, status: str, error: Any) -> None:
        if op.kind == "step":
            self._write(op.workflow_id, "operation-end", op=op.op_id, status=status)

    def attempt_start(self, attempt: Attempt) -> None:
        self._write(attempt.workflow_id, "attempt-start", n=attempt.attempt, op=attempt.op_id)

    def attempt_end(
        self, attempt: Attempt, outcome: str, error: BaseException | None, seconds: float
    ) -> None:
        self._write(
            attempt.workflow_id, "attempt-end", n=attempt.attempt, op=attempt.op_id, outcome=outcome
        )


class Faulty(Recording):
    """Records, then raises, from every hook (10-4)."""

    def _write(self, run: str, hook: str, **fields: Any) -> None:
        super()._write(run, hook, **fields)
        raise RuntimeError(f"{self.label} {hook} fails")


# Registered in this order on the suite's worker: every run meets all four.
PLUGINS = [
    Recording("CONFPLUGIN"),
    Faulty("CONFPLUGIN-FAULTY"),
    Recording("CONFPLUGIN-A"),
    Recording("CONFPLUGIN-B"),
]


@workflow("plugin-greet")
async def plugin_greet(ctx, name: str) -> str:
    return await ctx.step("greet", greet, ctx.workflow_id, name)


def unreliable(rid: str) -> str:
    if ran(rid, "unreliable") == 1:
        raise RuntimeError("the first attempt fails")
    return "Operation succeeded"


# A 1 s delay is waited inside the worker: both attempts run in one claim.
ONE_RETRY = RetryPolicy(max_attempts=3, initial_interval=timedelta(seconds=1), jitter=0)


@workflow("plugin-10-3")
async def plugin_retry(ctx) -> str:
    return await ctx.step("unreliable", unreliable, ctx.workflow_id, retry=ONE_RETRY)


@workflow("plugin-10-6")
async def plugin_wait(ctx) -> None:
    await ctx.sleep("wait", PARK)


@workflow("plugin-10-7")
async def plugin_fail(ctx) -> None:
    await ctx.step("fails", fail, ctx.workflow_id, "fails", retry=RetryPolicy(max_attempts=1))


ALL = [v for v in list(globals().values()) if hasattr(v, "__workflow_definition__")]
