"""Runs one benchmark phase at a time against the metering moto server.

A phase is one workload on a freshly reset emulator: either the engine (the
project's API in this process, K `benchmarks.worker_main` processes) or the
floor (`benchmarks.floor`). The harness itself makes no AWS call while a
phase is measured: it starts runs through the HTTP API and learns about
progress from the meter (`/_bench/progress`), which sees every write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .hooks import Recorder, merge, role, wrap_role

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Workload:
    workflows: int = 200
    steps: int = 10
    workers: int = 2
    concurrency: int = 10  # runs in flight per worker process
    result_bytes: int = 100
    mix: bool = False
    sleep_seconds: float = 1.0
    fanout: bool = False  # each workflow's steps are the items of one ctx.map
    distributed: bool = False  # each workflow's steps are child runs of a distributed map
    max_concurrency: int | None = None  # of that map (None: every item at once)
    batched: bool = False  # batched checkpoints (the run, or the map's items)

    @property
    def steps_total(self) -> int:
        return self.workflows * self.steps

    def label(self) -> str:
        mix = ", mix (1 sleep + 1 signal per run)" if self.mix else ""
        return (
            f"{self.workflows} workflows x {self.steps} steps, results {self.result_bytes} B, "
            f"K={self.workers} worker processes x {self.concurrency} slots{mix}"
        )


@dataclass
class PhaseResult:
    name: str
    engine: str  # "ours" | "floor"
    workload: Workload
    wall_s: float
    first_start: float
    calls: dict[str, Any]  # role -> "service.Op" -> stat (botocore hooks, every process)
    meter: dict[str, Any]  # the metering server's snapshot
    api_requests: int = 0
    api_latency_s: list[float] = field(default_factory=list)
    api_unloaded_latency_s: list[float] = field(default_factory=list)
    sweeps: int = 0
    sweep_seconds: float = 0.0
    idle_sweep: dict[str, Any] = field(default_factory=dict)
    worker_stats: list[dict[str, Any]] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per process kind

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["meter"] = {k: v for k, v in self.meter.items() if k in ("ops", "other", "errors")}
        d.pop("api_latency_s")
        return d


def _http(url: str, method: str = "GET", body: Any = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


class Harness:
    def __init__(
        self,
        *,
        poll_seconds: int = 20,
        sweep_interval: float = 60.0,
        start_threads: int = 8,
        timeout: float = 600.0,
        stock_moto: bool = False,
        log: Any = None,
    ) -> None:
        self.stock_moto = stock_moto
        self.poll_seconds = poll_seconds
        self.sweep_interval = sweep_interval
        self.start_threads = start_threads
        self.timeout = timeout
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        self.server: subprocess.Popen[bytes] | None = None
        self.url = ""

    # --- the metering moto server ---------------------------------------------------------
    def start(self) -> Harness:
        from orchestrator.local.stack import use_local_credentials

        use_local_credentials()
        port_file = self.workdir / "moto.url"
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.meter_server",
                "--port-file",
                str(port_file),
                *(["--stock-moto"] if self.stock_moto else []),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "moto.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the moto server did not start; see {self.workdir}/moto.log")
            time.sleep(0.05)
        self.url = port_file.read_text().strip()
        return self

    def stop(self) -> None:
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.stop()
        if exc_type is None:  # keep the logs of a failed run
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _reset(self) -> None:
        _http(f"{self.url}/moto-api/reset", "POST", {})
        _http(f"{self.url}/_bench/reset", "POST", {})

    def progress(self) -> dict[str, Any]:
        return dict(_http(f"{self.url}/_bench/progress"))

    def meter(self) -> dict[str, Any]:
        return dict(_http(f"{self.url}/_bench/meter"))

    # --- subprocesses ----------------------------------------------------------------------
    def _spawn(
        self, module: str, roles: list[str], concurrency: int, env: dict[str, str], extra: list[str]
    ) -> list[tuple[subprocess.Popen[bytes], Path]]:
        procs = []
        ready_files = []
        for name in roles:
            counts = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}.json"
            ready = counts.with_suffix(".ready")
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    module,
                    "--role",
                    name,
                    "--concurrency",
                    str(concurrency),
                    "--counts-out",
                    str(counts),
                    "--ready-file",
                    str(ready),
                    *extra,
                ],
                cwd=ROOT,
                env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=open(self.workdir / f"{name}.log", "ab"),  # noqa: SIM115
            )
            procs.append((proc, counts))
            ready_files.append(ready)
        deadline = time.monotonic() + 60
        for (proc, _), ready in zip(procs, ready_files, strict=True):
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    self._terminate(procs)
                    raise RuntimeError(f"a worker did not start; see logs in {self.workdir}")
                time.sleep(0.05)
        return procs

    def _terminate(self, procs: list[tuple[subprocess.Popen[bytes], Path]]) -> list[dict[str, Any]]:
        # Every run has ended by now: two signals stop a worker at once (the second
        # ends the drain, which would otherwise let the open 20 s long poll return).
        for n in range(2):
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            if n == 0:
                time.sleep(0.2)  # the first signal's handler is installed and running
        dumps = []
        for proc, counts in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if counts.exists():
                dumps.append(json.loads(counts.read_text()))
            else:
                self.log(f"warning: {counts.name} missing (worker exit {proc.returncode})")
        return dumps

    def _drive(
        self,
        ids: list[str],
        start: Any,
        *,
        sequential: bool,
        on_waiting: Any = None,
    ) -> tuple[float, float]:
        """Start every run (all at once from `start_threads` threads, or one after
        the other, each after the previous ended) and wait until the meter has
        seen them all end. Returns (first start, last end) in epoch seconds."""
        deadline = time.monotonic() + self.timeout
        signalled: set[str] = set()
        first_start = time.time()
        with ThreadPoolExecutor(max_workers=self.start_threads) as pool:

            def wait_for(n: int, interval: float) -> None:
                while True:
                    p = self.progress()
                    if on_waiting is not None:
                        fresh = [w for w in p["waiting"] if w not in signalled]
                        if fresh:
                            signalled.update(fresh)
                            pool.submit(on_waiting, fresh)
                    if p["done"] >= n:
                        return
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"only {p['done']} of {n} runs ended in {self.timeout:.0f} s"
                        )
                    time.sleep(interval)

            if sequential:
                for i, wid in enumerate(ids):
                    start(wid)
                    wait_for(i + 1, 0.005)
            else:
                starts = [pool.submit(start, wid) for wid in ids]
                wait_for(len(ids), 0.05)
                for f in starts:
                    f.result()
        meter = self.meter()
        failed = sum(1 for _, st in meter["done"].values() if st != "completed")
        if failed:
            self.log(f"warning: {failed} run(s) did not complete")
        return first_start, max(t for t, _ in meter["done"].values())

    # --- the engine ----------------------------------------------------------------------------
    def run_ours(self, name: str, w: Workload, *, sequential: bool = False) -> PhaseResult:
        from orchestrator.client import Client
        from orchestrator.local import LocalStack
        from orchestrator.settings import Settings

        self._reset()
        recorder = Recorder("api")
        stack = LocalStack(
            settings=Settings(poll_seconds=self.poll_seconds),
            endpoint_url=self.url,
            background_interval=self.sweep_interval,
        )
        recorder.install(stack.session)
        with role("setup"):
            stack.start()
        sweeps: dict[str, Any] = {"n": 0, "s": 0.0}
        sweep_once = stack.sweeper.sweep_once

        def timed_sweep() -> Any:
            t0 = time.perf_counter()
            try:
                return sweep_once()
            finally:
                sweeps["n"] += 1
                sweeps["s"] += time.perf_counter() - t0

        stack.sweeper.sweep_once = wrap_role("sweeper", timed_sweep)  # type: ignore[method-assign]
        stack.emulator.fire_due = wrap_role("scheduler-emulator", stack.emulator.fire_due)  # type: ignore[method-assign]
        procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        stopped = False
        try:
            # Counting starts here, before the workers exist: whatever a worker
            # does from its first call on (registering itself, say) is counted by
            # its hooks and by the meter alike.
            recorder.reset()
            _http(f"{self.url}/_bench/reset", "POST", {})
            procs = self._spawn(
                "benchmarks.worker_main",
                [f"worker-{i}" for i in range(w.workers)],
                w.concurrency,
                stack.exports(),
                [],
            )
            client = Client(stack.api_url, timeout=60)
            latencies: list[float] = []
            lock = threading.Lock()
            spec = {
                "steps": w.steps,
                "result_bytes": w.result_bytes,
                "mix": w.mix,
                "sleep_seconds": w.sleep_seconds,
                "fanout": w.fanout,
                "distributed": w.distributed,
                "max_concurrency": w.max_concurrency,
                "checkpoint": "batched" if w.batched else "each",
            }
            # A batched run is the workflow declared checkpoint="batched"; a batched
            # map is the plain one with the map's own option.
            wf_name = "bench_batched" if w.batched and not w.fanout else "bench"
            ids = [f"{name}-{i:06d}-{uuid.uuid4().hex[:8]}" for i in range(w.workflows)]

            def timed(fn: Any, *args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                out = fn(*args, **kwargs)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                return out

            def signal_runs(wids: list[str]) -> None:
                for wid in wids:
                    timed(client.signal, wid, "go", {"ok": True})

            self.log(f"  {name}: {w.label()}" + (", one at a time" if sequential else ""))
            cpu0 = time.process_time()
            first_start, last = self._drive(
                ids,
                lambda wid: timed(client.start, wf_name, spec, id=wid),
                sequential=sequential,
                on_waiting=signal_runs if w.mix else None,
            )
            wall = last - first_start
            main_cpu = time.process_time() - cpu0
            worker_dumps = self._terminate(procs)
            procs = []
            # The sweeper's walk of by_created reads every run once, a grace period
            # after its start (once a minute on AWS). Walk now, as if the grace had
            # passed, so that the per-run cost of the walk is in the figures.
            # (A phase longer than the grace has had part of its runs walked by the
            # background sweeper already; each run is walked once either way.)
            with role("sweeper"):
                stack.sweeper.walk_new_runs(
                    stack.clock.now_ms() + stack.settings.sweep_grace_ms + 1000
                )
            meter = self.meter()
            main_calls = recorder.snapshot()
            # The API's own duration without the load (what a Lambda would bill):
            # starts one at a time on the quiet emulator, not counted above.
            unloaded = []
            for i in range(20):
                t0 = time.perf_counter()
                client.start(wf_name, spec, id=f"{name}-probe-{i}-{uuid.uuid4().hex[:6]}")
                unloaded.append(time.perf_counter() - t0)
            stack.stop()  # the background loop ends before the idle sweep below
            stopped = True
            # One sweep measured on its own (the sweeper's fixed cost per invocation;
            # it runs once a minute on AWS). The probe runs above are not due yet.
            _http(f"{self.url}/_bench/reset", "POST", {})
            recorder.reset()
            t0 = time.perf_counter()
            with role("sweeper"):
                sweep_once()
            idle = {
                "seconds": time.perf_counter() - t0,
                "calls": recorder.snapshot(),
                "meter": self.meter()["ops"],
            }
        finally:
            if procs:
                self._terminate(procs)
            if not stopped:
                stack.stop()
        calls = merge(main_calls, *(d["calls"] for d in worker_dumps))
        calls.pop("setup", None)
        return PhaseResult(
            name=name,
            engine="ours",
            workload=w,
            wall_s=wall,
            first_start=first_start,
            calls=calls,
            meter=meter,
            api_requests=len(latencies),
            api_latency_s=latencies,
            api_unloaded_latency_s=unloaded,
            sweeps=sweeps["n"],
            sweep_seconds=sweeps["s"],
            idle_sweep=idle,
            worker_stats=[d.get("worker_stats", {}) for d in worker_dumps],
            cpu_s=_cpu(meter, main_cpu, worker_dumps, "api + harness"),
        )

    # --- the floor -------------------------------------------------------------------------------
    def run_floor(self, name: str, w: Workload, *, sequential: bool = False) -> PhaseResult:
        import boto3
        from botocore.config import Config

        from . import floor

        self._reset()
        kw: dict[str, Any] = {"endpoint_url": self.url, "region_name": "us-east-1"}
        setup = boto3.session.Session()
        queue_url = floor.create_resources(
            setup.client("dynamodb", **kw), setup.client("sqs", **kw), visibility=35
        )
        recorder = Recorder("floor-api")
        session = boto3.session.Session()
        recorder.install(session)
        config = Config(max_pool_connections=50, read_timeout=40)
        ddb = session.client("dynamodb", config=config, **kw)
        sqs = session.client("sqs", config=config, **kw)
        env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            floor.ENV_FLOOR_QUEUE_URL: queue_url,
        }
        _http(f"{self.url}/_bench/reset", "POST", {})
        procs = self._spawn(
            "benchmarks.floor",
            [f"floor-worker-{i}" for i in range(w.workers)],
            w.concurrency,
            env,
            ["--poll-seconds", str(self.poll_seconds)],
        )
        try:
            spec = json.dumps({"steps": w.steps, "result_bytes": w.result_bytes})
            ids = [f"{name}-{i:06d}-{uuid.uuid4().hex[:8]}" for i in range(w.workflows)]
            self.log(f"  {name}: {w.label()}" + (", one at a time" if sequential else ""))
            cpu0 = time.process_time()
            first_start, last = self._drive(
                ids,
                lambda wid: floor.start_one(ddb, sqs, queue_url, wid, spec),
                sequential=sequential,
            )
            wall = last - first_start
            main_cpu = time.process_time() - cpu0
            dumps = self._terminate(procs)
            procs = []
            meter = self.meter()
        finally:
            if procs:
                self._terminate(procs)
        calls = merge(recorder.snapshot(), *(d["calls"] for d in dumps))
        return PhaseResult(
            name=name,
            engine="floor",
            workload=w,
            wall_s=wall,
            first_start=first_start,
            calls=calls,
            meter=meter,
            worker_stats=[d.get("worker_stats", {}) for d in dumps],
            cpu_s=_cpu(meter, main_cpu, dumps, "starter + harness"),
        )


def _cpu(
    meter: dict[str, Any], main: float, dumps: list[dict[str, Any]], main_label: str
) -> dict[str, float]:
    return {
        "moto server": float(meter.get("cpu_s", 0.0)),
        main_label: main,
        "workers": sum(float(d.get("worker_stats", {}).get("cpu_s", 0.0)) for d in dumps),
    }
