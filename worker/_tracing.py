"""OpenTelemetry spans, optional: a span per run claim ("workflow.run") and per
step ("workflow.step"), with the workflow id as an attribute, continuing the
trace of the start request when the caller sent a W3C `traceparent` (the API
stores it with the run). Off unless ORCHESTRATOR_TRACING=1 (`Settings.tracing`,
or `Worker(tracing=True)`) and the `otel` extra is installed; the SDK, exporter
and sampler are the user's to configure, as with any OpenTelemetry library."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class Tracing:
    def __init__(self, enabled: bool = False) -> None:
        self._tracer: Any = None
        if enabled:
            try:
                from opentelemetry import trace
            except ImportError as e:
                raise RuntimeError(
                    "tracing is on but OpenTelemetry is not installed: install the otel extra "
                    "(pip install './dist/<the wheel>[otel]', or pip install -e '.[otel]' "
                    "in a clone)"
                ) from e
            self._tracer = trace.get_tracer("orchestrator.worker")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def span(
        self, name: str, *, traceparent: str | None = None, **attributes: Any
    ) -> Iterator[Any]:
        if self._tracer is None:
            yield None
            return
        context = None
        if traceparent:
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

            context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        attrs = {k.replace("_", "."): v for k, v in attributes.items() if v is not None}
        with self._tracer.start_as_current_span(name, context=context, attributes=attrs) as span:
            yield span
