"""Worker metrics: counters and histograms kept in process, exported in the
Prometheus text format (`WorkerMetrics.render()`), optionally on an HTTP
endpoint (`serve(port)`, or `orchestrator worker --metrics-port`). Built on
prometheus_client, the standard library for the format, with one registry per
worker (two workers in one process keep their own numbers); counters and
histograms also carry prometheus_client's usual `_created` series.

| metric | type | labels |
| --- | --- | --- |
| orchestrator_runs_claimed_total | counter | workflow |
| orchestrator_runs_finished_total | counter | workflow, status (completed, failed, cancelled) |
| orchestrator_runs_parked_total | counter | workflow |
| orchestrator_lease_losses_total | counter | workflow |
| orchestrator_steps_total | counter | workflow, outcome (ok, error, replayed) |
| orchestrator_step_seconds | histogram | workflow |
| orchestrator_queue_wait_seconds | histogram | (none): message sent to received |
| orchestrator_runs_in_flight | gauge | (none) |

The run and step series are counted by `MetricsPlugin`, a plugin on the
worker's own hooks (worker/plugins.py); the queue wait and the runs in flight
are the poller's.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import MetricsHandler

from orchestrator.loopback import LOOPBACK_HOSTS, check_request, host_name

from .plugins import TERMINAL, Attempt, Invocation, Operation, Plugin

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# name: (kind, help, label names)
_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "orchestrator_runs_claimed_total": ("counter", "Runs claimed by this worker", ("workflow",)),
    "orchestrator_runs_finished_total": (
        "counter",
        "Runs this worker finished, by terminal status",
        ("workflow", "status"),
    ),
    "orchestrator_runs_parked_total": (
        "counter",
        "Runs parked (sleep, signal wait, long retry delay)",
        ("workflow",),
    ),
    "orchestrator_lease_losses_total": (
        "counter",
        "Runs abandoned because their lease was lost",
        ("workflow",),
    ),
    "orchestrator_steps_total": ("counter", "Step calls by outcome", ("workflow", "outcome")),
    "orchestrator_step_seconds": ("histogram", "Step attempt duration", ("workflow",)),
    "orchestrator_queue_wait_seconds": ("histogram", "Time from message sent to received", ()),
    "orchestrator_runs_in_flight": ("gauge", "Runs this worker is handling now", ()),
}


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        for name, (kind, text, labels) in _METRICS.items():
            if kind == "counter":
                self._metrics[name] = Counter(
                    name.removesuffix("_total"), text, labels, registry=self.registry
                )
            elif kind == "histogram":
                self._metrics[name] = Histogram(
                    name, text, labels, buckets=BUCKETS, registry=self.registry
                )
            else:
                self._metrics[name] = Gauge(name, text, labels, registry=self.registry)
        self._server: ThreadingHTTPServer | None = None

    def _child(self, name: str, labels: dict[str, str]) -> Any:
        metric = self._metrics[name]
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, by: float = 1.0, **labels: str) -> None:
        self._child(name, labels).inc(by)

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._child(name, labels).observe(value)

    def set_gauge(self, name: str, value: float) -> None:
        self._metrics[name].set(value)

    def _sample(self, sample_name: str, labels: dict[str, str]) -> float:
        value = self.registry.get_sample_value(sample_name, labels)
        return 0.0 if value is None else value

    def value(self, name: str, **labels: str) -> float:
        """A counter's value (tests, diagnostics)."""
        return self._sample(name, labels)

    def count(self, name: str, **labels: str) -> int:
        """How many observations a histogram has."""
        return int(self._sample(f"{name}_count", labels))

    def render(self) -> str:
        return generate_latest(self.registry).decode()

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on `port` (0: any free port); returns the port. Loopback
        by default: pass host="0.0.0.0" (`--metrics-host`) for a remote scraper.

        On loopback, a request whose Host is not a loopback name, or that comes
        from a web page's origin, is refused (403) as by every local server
        (`orchestrator.loopback`): a page whose DNS name was rebound to
        127.0.0.1 could otherwise read the workflow names and counts. Bound
        elsewhere, the Host is whatever name the scraper uses, which only the
        operator knows, so it is not checked."""
        base = MetricsHandler.factory(self.registry)
        guarded = host_name(host) in LOOPBACK_HOSTS

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:
                refusal = check_request(self.headers) if guarded else None
                if refusal is None:
                    super().do_GET()
                    return
                body = refusal.body()
                self.send_response(refusal.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="metrics").start()
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class MetricsPlugin(Plugin):
    """Counts claims, ends, parks, lost leases and step attempts into `metrics`."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def invocation_start(self, inv: Invocation) -> None:
        if not inv.continued:  # one claim, however many generations it runs
            self.metrics.inc("orchestrator_runs_claimed_total", workflow=inv.workflow)

    def invocation_end(self, inv: Invocation, status: str) -> None:
        if status in TERMINAL:
            self.metrics.inc(
                "orchestrator_runs_finished_total", workflow=inv.workflow, status=status
            )
        elif status == "parked":
            self.metrics.inc("orchestrator_runs_parked_total", workflow=inv.workflow)
        elif status == "lost":
            self.metrics.inc("orchestrator_lease_losses_total", workflow=inv.workflow)

    def operation_replayed(self, op: Operation) -> None:
        if op.kind == "step":
            self.metrics.inc("orchestrator_steps_total", workflow=op.workflow, outcome="replayed")

    def attempt_end(
        self, attempt: Attempt, outcome: str, error: BaseException | None, seconds: float
    ) -> None:
        label = "ok" if outcome == "succeeded" else "error"
        self.metrics.inc("orchestrator_steps_total", workflow=attempt.workflow, outcome=label)
        self.metrics.observe("orchestrator_step_seconds", seconds, workflow=attempt.workflow)
