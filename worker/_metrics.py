"""Worker metrics: counters and histograms kept in process, exported in the
Prometheus text format (`WorkerMetrics.render()`), optionally on an HTTP
endpoint (`serve(port)`, or `orchestrator worker --metrics-port`). No
dependency: the exposition format is small and stable.

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
"""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_HELP = {
    "orchestrator_runs_claimed_total": ("counter", "Runs claimed by this worker"),
    "orchestrator_runs_finished_total": (
        "counter",
        "Runs this worker finished, by terminal status",
    ),
    "orchestrator_runs_parked_total": (
        "counter",
        "Runs parked (sleep, signal wait, long retry delay)",
    ),
    "orchestrator_lease_losses_total": ("counter", "Runs abandoned because their lease was lost"),
    "orchestrator_steps_total": ("counter", "Step calls by outcome"),
    "orchestrator_step_seconds": ("histogram", "Step attempt duration"),
    "orchestrator_queue_wait_seconds": ("histogram", "Time from message sent to received"),
    "orchestrator_runs_in_flight": ("gauge", "Runs this worker is handling now"),
}

Labels = tuple[tuple[str, str], ...]


class WorkerMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._hist: dict[str, dict[Labels, list[float]]] = defaultdict(
            dict
        )  # buckets..., sum, count
        self._gauges: dict[str, float] = {}
        self._server: ThreadingHTTPServer | None = None

    def inc(self, name: str, by: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._counters[name][tuple(sorted(labels.items()))] += by

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            h = self._hist[name].setdefault(key, [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if value <= bound:
                    h[i] += 1
            h[-2] += value
            h[-1] += 1

    def set_gauge(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = value

    def value(self, name: str, **labels: str) -> float:
        """A counter's value (tests, diagnostics)."""
        with self._lock:
            return self._counters[name].get(tuple(sorted(labels.items())), 0.0)

    def count(self, name: str, **labels: str) -> int:
        """How many observations a histogram has."""
        with self._lock:
            h = self._hist[name].get(tuple(sorted(labels.items())))
            return int(h[-1]) if h else 0

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, text) in _HELP.items():
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                if kind == "counter":
                    for labels, v in sorted(self._counters[name].items()):
                        lines.append(f"{name}{_fmt(labels)} {v:g}")
                elif kind == "gauge":
                    lines.append(f"{name} {self._gauges.get(name, 0):g}")
                else:
                    for labels, h in sorted(self._hist[name].items()):
                        for bound, n in zip(BUCKETS, h, strict=False):
                            lines.append(
                                f"{name}_bucket{_fmt((*labels, ('le', f'{bound:g}')))} {n:g}"
                            )
                        lines.append(f"{name}_bucket{_fmt((*labels, ('le', '+Inf')))} {h[-1]:g}")
                        lines.append(f"{name}_sum{_fmt(labels)} {h[-2]:g}")
                        lines.append(f"{name}_count{_fmt(labels)} {h[-1]:g}")
        return "\n".join(lines) + "\n"

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on `port` (0: any free port); returns the port. Loopback
        by default: pass host="0.0.0.0" (`--metrics-host`) for a remote scraper."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = metrics.render().encode()
                self.send_response(200 if self.path.startswith("/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="metrics").start()
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}"
