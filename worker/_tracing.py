"""OpenTelemetry spans, optional: a span per claim of a run ("workflow.run") and
per step attempt ("workflow.step"), with the workflow id as an attribute,
continuing the trace of the start request when the caller sent a W3C
`traceparent` (the API stores it with the run). Off unless ORCHESTRATOR_TRACING=1
(`Settings.tracing`, or `Worker(tracing=True)`) and the `otel` extra is
installed; the SDK, exporter and sampler are the user's to configure, as with
any OpenTelemetry library.

`TracingPlugin` is a plugin on the worker's hooks (worker/plugins.py). The run's
span is made current in the claim's context at `invocation_start`, so the run's
tasks, created after it, inherit it; a step's span is made current in the
attempt's own context (its thread, for a sync function), so spans the function
opens are its children.
"""

from __future__ import annotations

import contextvars
from typing import Any

from .plugins import Attempt, Invocation, Plugin

# The open span and the context token, per claim and per attempt.
_run: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "tracing_run", default=None
)
_step: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "tracing_step", default=None
)


class TracingPlugin(Plugin):
    def __init__(self) -> None:
        try:
            from opentelemetry import context, trace
        except ImportError as e:
            raise RuntimeError(
                "tracing is on but OpenTelemetry is not installed: install the otel extra "
                "(pip install './dist/<the wheel>[otel]', or pip install -e '.[otel]' "
                "in a clone)"
            ) from e
        self._trace = trace
        self._context = context
        self._tracer = trace.get_tracer("orchestrator.worker")

    def _open(self, var: contextvars.ContextVar[Any], name: str, parent: Any, **attrs: Any) -> None:
        attributes = {k.replace("_", "."): v for k, v in attrs.items() if v is not None}
        span = self._tracer.start_span(name, context=parent, attributes=attributes)
        token = self._context.attach(self._trace.set_span_in_context(span))
        var.set((span, token))

    def _close(self, var: contextvars.ContextVar[Any], error: BaseException | None) -> None:
        held = var.get()
        if held is None:
            return
        var.set(None)
        span, token = held
        if error is not None:
            span.record_exception(error)
        span.end()
        self._context.detach(token)

    def invocation_start(self, inv: Invocation) -> None:
        parent = None
        if inv.traceparent:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            parent = TraceContextTextMapPropagator().extract({"traceparent": inv.traceparent})
        self._open(
            _run,
            "workflow.run",
            parent,
            workflow_id=inv.workflow_id,
            workflow_name=inv.workflow,
            workflow_epoch=inv.epoch,
            worker_id=inv.worker_id,
        )

    def invocation_end(self, inv: Invocation, status: str) -> None:
        held = _run.get()
        if held is not None:
            held[0].set_attribute("workflow.status", status)
        self._close(_run, None)

    def attempt_start(self, attempt: Attempt) -> None:
        self._open(
            _step,
            "workflow.step",
            None,
            workflow_id=attempt.workflow_id,
            step_name=attempt.name,
            step_position=attempt.op_id,
            step_attempt=attempt.attempt,
        )

    def attempt_end(
        self, attempt: Attempt, outcome: str, error: BaseException | None, seconds: float
    ) -> None:
        self._close(_step, error)
