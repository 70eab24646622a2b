"""The chaos campaign: many runs of mixed shapes on the embedded stack, across
several worker processes that are SIGKILLed at random moments, with AWS
faults injected into every client (workers, API, sweeper) and duplicate SQS
deliveries, and the embedded stack itself restarted on its state dir (restart.py);
then every invariant of DESIGN.md is checked from the stored
records, the step functions' execution log and the write journal.

    .venv/bin/python -m tests.chaos.campaign                     # the full campaign
    .venv/bin/python -m tests.chaos.campaign --runs 30 --chaos-seconds 15 --workers 2

Exit status 0 when no invariant was violated. `tests/chaos/test_chaos_short.py`
runs a short version in the default suite; docs/reliability.md says what
each check proves.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

from orchestrator import resources as r  # noqa: E402
from orchestrator import testing_faults as faults  # noqa: E402
from orchestrator.clock import SYSTEM_CLOCK  # noqa: E402
from orchestrator.errors import NotFoundError  # noqa: E402
from orchestrator.local import LocalStack  # noqa: E402
from orchestrator.local.stack import use_local_credentials  # noqa: E402
from orchestrator.model import Run, StepRecord  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.store import Store  # noqa: E402
from orchestrator.testing_faults.journal import pointers_in  # noqa: E402

from .checks import Report  # noqa: E402
from .checks import check as check_invariants  # noqa: E402
from .plan import Planned, make_plan  # noqa: E402
from .restart import check_restarts, gated, restart, wait_for_a_value  # noqa: E402
from .workers import Workers  # noqa: E402
from .workflows import ENV_EXEC_LOG  # noqa: E402

TERMINAL = {"completed", "failed", "cancelled"}

# Per call, in every process (workers, API, sweeper).
DEFAULT_RATES: dict[str, float] = {
    "throttle": 0.01,
    "5xx": 0.01,
    "conn": 0.01,
    "lost": 0.01,
    "lost_retry": 0.01,
    "latency": 0.05,
    "duplicate": 0.05,
    "duplicate_late": 0.05,
    # Per HTTP attempt, inside the SDK's retry loop (standard mode, 5 attempts).
    "attempt.throttle": 0.05,
    "attempt.5xx": 0.02,
    "attempt.conn": 0.02,
    # S3 (the large values' PutObject and GetObject) on top: its calls are few, so
    # its rates are higher, or a short campaign would see no S3 fault at all.
    "s3.throttle": 0.03,
    "s3.5xx": 0.03,
    "s3.conn": 0.02,
    "s3.lost": 0.03,
    "s3.lost_retry": 0.03,
    "s3.latency": 0.1,
    "s3.attempt.throttle": 0.1,
    "s3.attempt.5xx": 0.05,
    "s3.attempt.conn": 0.03,
}


@dataclass
class Config:
    runs: int = 150
    workers: int = 4
    concurrency: int = 8
    lease_seconds: int = 4
    start_seconds: float = 60.0  # runs are started over this span
    chaos_seconds: float = 90.0  # SIGKILLs happen during this span
    kill_interval: tuple[float, float] = (2.0, 6.0)
    # The embedded stack restarts on its state dir this many times, spread over
    # the chaos span (tests/chaos/restart.py).
    restarts: int = 1
    pause_share: float = 0.25  # this share of the chaos events SIGSTOPs a worker instead
    settle_seconds: float = 300.0  # then wait this long at most for every run to end
    seed: int = 1
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    latency_ms: tuple[float, float] = (20.0, 1500.0)
    bucket: str = "chaos-values"  # the large values' bucket, on the moto server
    # Values above this many bytes of JSON go to S3: low (the least the settings
    # allow), so the large shape's values of a few KB are offloaded and the
    # campaign stays fast.
    offload_bytes: int = 1024
    workdir: Path | None = None
    verbose: bool = False


# --- the campaign ------------------------------------------------------------------------------
@dataclass
class Outcome:
    cfg: Config
    plan: list[Planned]
    runs: dict[str, Run | None]
    histories: dict[str, list[StepRecord]]
    executions: list[dict[str, Any]]
    journal: list[dict[str, Any]]
    fault_log: list[dict[str, Any]]
    kills: int
    pauses: int
    withheld: int
    worker_processes: int
    api_errors: Counter[str]
    seconds: float
    settled: bool
    workdir: Path
    # Every large-value pointer in a stored record, with where it was found
    # ("<pk> <sk> <attribute>"), and the value bucket's objects by key.
    pointers: list[tuple[str, str]] = field(default_factory=list)
    objects: dict[str, bytes] = field(default_factory=dict)
    restored: list[dict[str, int]] = field(default_factory=list)  # each restart's snapshot


def check(o: Outcome) -> Report:
    """Every invariant of checks.py, and the restarts' own (restart.py)."""
    report = check_invariants(o)
    check_restarts(o, report)
    return report


def _retry(what: str, fn: Callable[[], Any], errors: Counter[str], attempts: int = 30) -> Any:
    """The way an application calls the API: retry what failed, with backoff."""
    from orchestrator.errors import BadInputError, ConflictError, NotFoundError

    delay = 0.1
    for i in range(attempts):
        try:
            return fn()
        except (BadInputError, NotFoundError, ConflictError) as e:
            errors[f"{what}: refused ({type(e).__name__})"] += 1  # the check reports the run
            return None
        except Exception as e:
            errors[f"{what}: {type(e).__name__}"] += 1
            if i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    return None


def _complete_later(p: Planned, checker: Store, svc: Any, errors: Counter[str]) -> threading.Thread:
    """Complete the run's callback through the API (with faults) as soon as the
    run has created it: its token is read from the run's records."""

    def go() -> None:
        from orchestrator.api import callbacks

        give_up = time.monotonic() + 60
        token = None
        while token is None and time.monotonic() < give_up:
            try:
                token = next((s.callback_id for s in checker.steps(p.id) if s.callback_id), None)
            except Exception:
                token = None
            if token is None:
                time.sleep(0.1)
        if token is None:
            errors["complete: no callback to complete"] += 1
            return
        value = {"v": int(p.id.split("-")[2])}
        outcome = {"ok": True, "result": value}
        if _retry("complete", lambda: callbacks.complete(svc, token, outcome), errors):
            p.accepted = True

    th = threading.Thread(target=go, daemon=True, name=f"complete-{p.id}")
    th.start()
    return th


def fault_spec(cfg: Config, seed: int, workdir: Path) -> str:
    spec: dict[str, Any] = {
        "seed": seed,
        **cfg.rates,
        "latency_ms": list(cfg.latency_ms),
        "log": str(workdir / "faults.jsonl"),
        "journal": str(workdir / "journal.jsonl"),
    }
    return json.dumps(spec)


def run_campaign(cfg: Config) -> Outcome:
    use_local_credentials()
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # The stack's own logs (a sweep that met an injected fault...) go to a file.
    handler = logging.FileHandler(workdir / "stack.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    for name in ("faults.jsonl", "journal.jsonl", "executions.jsonl"):
        (workdir / name).write_text("")
    rng = random.Random(cfg.seed)
    plan = make_plan(cfg, rng)
    settings = Settings(
        lease_seconds=cfg.lease_seconds,
        poll_seconds=1,
        sweep_grace_ms=1000,
        bucket=cfg.bucket,
        offload_bytes=cfg.offload_bytes,
    )

    # The API and the sweeper run in this process: their clients get faults too
    # (aws.client() reads the variable when it builds them).
    saved = os.environ.get(faults.ENV_FAULTS)
    os.environ[faults.ENV_FAULTS] = fault_spec(cfg, cfg.seed, workdir)

    def make_stack(port: int = 0, *, closed: bool = False) -> LocalStack:
        return LocalStack(
            clock=SYSTEM_CLOCK,
            settings=settings,
            background_interval=0.5,
            serve_api=False,
            aws_port=port,
            allow_reset=True,  # a restart empties moto's in-process state
            aws_middleware=gated(closed=closed),  # every request counted (restart.py)
        )

    try:
        stack = make_stack().start()
    finally:
        if saved is None:
            os.environ.pop(faults.ENV_FAULTS, None)
        else:
            os.environ[faults.ENV_FAULTS] = saved
    # The checks read through a client without faults.
    plain = boto3.session.Session().client(
        "dynamodb", region_name=stack.settings.region, endpoint_url=stack.settings.endpoint_url
    )
    checker = Store(plain, stack.settings.table, SYSTEM_CLOCK)

    env = {**os.environ, **stack.exports(), "PYTHONPATH": str(ROOT)}
    env[r.ENV_POLL_SECONDS] = "1"
    env[r.ENV_OFFLOAD_BYTES] = str(cfg.offload_bytes)
    env[ENV_EXEC_LOG] = str(workdir / "executions.jsonl")
    workers = Workers(cfg, env, lambda seed: fault_spec(cfg, seed, workdir), workdir)
    api_errors: Counter[str] = Counter()
    runs: dict[str, Run | None] = {}
    histories: dict[str, list[StepRecord]] = {}
    pointers: list[tuple[str, str]] = []
    objects: dict[str, bytes] = {}
    restored: list[dict[str, int]] = []
    t0 = time.monotonic()
    seconds = 0.0
    settled = False
    try:
        workers.start()
        events: list[tuple[float, str, Planned | None]] = []
        for p in plan:
            if p.parent is not None:
                continue  # its parent starts it
            events.append((p.at, "start", p))
            if p.signal_at is not None:
                events.append((p.signal_at, "signal", p))
            if p.cancel_at is not None:
                events.append((p.cancel_at, "cancel", p))
            for when in p.complete_at:
                events.append((when, "complete", p))
        # The stops have a random stream of their own, so that a change to the plan
        # (a new shape) does not change which workers are stopped, when and how.
        chaos = random.Random(f"{cfg.seed}/stops")
        times: list[float] = []
        t = chaos.uniform(*cfg.kill_interval)
        while t < cfg.chaos_seconds:
            times.append(t)
            t += chaos.uniform(*cfg.kill_interval)
        kinds = ["pause" if chaos.random() < cfg.pause_share else "kill" for _ in times]
        if len(kinds) >= 2 and 0 < cfg.pause_share < 1 and len(set(kinds)) == 1:
            # Both kinds at least once when both are asked for: a short campaign
            # would otherwise miss one by chance.
            kinds[chaos.randrange(len(kinds))] = "kill" if kinds[0] == "pause" else "pause"
        events += [(when, kind, None) for when, kind in zip(times, kinds, strict=True)]
        n = cfg.restarts
        events += [(cfg.chaos_seconds * (k + 1) / (n + 1), "restart", None) for k in range(n)]
        events.sort(key=lambda e: (e[0], e[1] != "start"))
        started: set[str] = set()
        completers: list[threading.Thread] = []
        for at, kind, p in events:
            wait = at - (time.monotonic() - t0)
            if wait > 0:
                time.sleep(wait)
            workers.respawn_dead()
            if kind == "pause":
                workers.pause_one(chaos, cfg.lease_seconds + chaos.uniform(5, 10))
                continue
            if kind == "kill":
                workers.kill_one(chaos)
                continue
            if kind == "restart":
                # A restart with large values to keep (a loaded machine may take
                # a minute or more to store the first).
                wait_for_a_value(stack, timeout=180)
                spec = fault_spec(cfg, cfg.seed + 500 + len(restored), workdir)
                stack, saved = restart(stack, workdir / "dev-state", make_stack, spec)
                restored.append(saved)
                continue
            assert p is not None
            svc = stack.service
            if kind == "start":
                _retry("start", lambda p=p, svc=svc: svc.start(p.name, p.input, p.id), api_errors)
                started.add(p.id)
            elif kind == "signal" and p.id in started:
                payload = {"v": int(p.id.split("-")[2])}
                _retry(
                    "signal", lambda p=p, v=payload, svc=svc: svc.signal(p.id, "go", v), api_errors
                )
            elif kind == "cancel" and p.id in started:
                _retry("cancel", lambda p=p, svc=svc: svc.cancel(p.id, "chaos"), api_errors)
            elif kind == "complete" and p.id in started:
                completers.append(_complete_later(p, checker, svc, api_errors))
        for th in completers:
            th.join(timeout=cfg.settle_seconds)
        deadline = time.monotonic() + cfg.settle_seconds
        pending = {p.id for p in plan}
        while time.monotonic() < deadline:
            workers.respawn_dead()
            for rid in list(pending):
                try:
                    if checker.get(rid).status.value in TERMINAL:
                        pending.discard(rid)
                except NotFoundError:
                    pass  # a child its parent has not started yet
            if not pending:
                settled = True
                break
            if cfg.verbose:
                print(f"  {len(pending)} runs not finished yet", file=sys.stderr)
            time.sleep(1.0)
        seconds = time.monotonic() - t0
    finally:
        workers.stop()  # the stack (moto) stays up for the reads below
        try:
            for p in plan:
                try:
                    run = runs[p.id] = checker.get(p.id)
                    # Every continue-as-new generation's records, oldest first.
                    histories[p.id] = [
                        s for g in range(run.generation + 1) for s in checker.steps(p.id, g)
                    ]
                except Exception:
                    runs[p.id] = None
                    histories[p.id] = []
            pointers, objects = _stored_values(plain, stack)
        finally:
            stack.stop()
            root.removeHandler(handler)
            handler.close()
            root.setLevel(level)
    return Outcome(
        cfg=cfg,
        plan=plan,
        runs=runs,
        histories=histories,
        executions=_read_jsonl(workdir / "executions.jsonl"),
        journal=_read_jsonl(workdir / "journal.jsonl"),
        fault_log=_read_jsonl(workdir / "faults.jsonl"),
        kills=workers.kills,
        pauses=workers.pauses,
        withheld=sum(
            p.read_text(errors="replace").count("lease ran out before a request was sent")
            for p in workdir.glob("worker-*.log")
        ),
        worker_processes=workers.started,
        api_errors=api_errors,
        seconds=seconds,
        settled=settled,
        workdir=workdir,
        pointers=pointers,
        objects=objects,
        restored=restored,
    )


def _stored_values(ddb: Any, stack: LocalStack) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
    """Every large-value pointer in the table, wherever it is (a step record, a
    batch item's entries, a run's output or any other attribute, a signal), and
    every object in the value bucket; read through clients without faults."""
    pointers: list[tuple[str, str]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=stack.settings.table):
        for item in page.get("Items", []):
            pk, sk = item.get(r.PK, {}).get("S"), item.get(r.SK, {}).get("S")
            for attr, value in item.items():
                for pointer in pointers_in(json.dumps(value)):
                    pointers.append((f"{pk} {sk} {attr}", pointer))
    s3 = boto3.session.Session().client(
        "s3", region_name=stack.settings.region, endpoint_url=stack.settings.endpoint_url
    )
    objects: dict[str, bytes] = {}
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.settings.bucket, Prefix=r.VALUE_KEY_PREFIX
    )
    for page in pages:
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=stack.settings.bucket, Key=obj["Key"])["Body"]
            objects[obj["Key"]] = body.read()
    return pointers, objects


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a SIGKILL mid-write
    return out


def format_report(o: Outcome, rep: Report, command: str) -> str:
    lines = [
        "chaos campaign report",
        f"  command: {command}",
        f"  workdir: {o.workdir}",
        f"  seed {o.cfg.seed}; {len(o.plan)} runs over {o.cfg.start_seconds:g} s; "
        f"{o.cfg.workers} worker processes x {o.cfg.concurrency}; lease {o.cfg.lease_seconds} s; "
        f"SIGKILL or SIGSTOP every {o.cfg.kill_interval[0]:g}-{o.cfg.kill_interval[1]:g} s "
        f"during the first {o.cfg.chaos_seconds:g} s ({o.cfg.pause_share:.0%} SIGSTOP); "
        f"{o.cfg.restarts} stack restart(s) on its state dir",
        f"  fault rates per call: {json.dumps(o.cfg.rates)}; latency {o.cfg.latency_ms[0]:g}-"
        f"{o.cfg.latency_ms[1]:g} ms",
        f"  all runs ended: {o.settled} ({o.seconds:.0f} s wall)",
    ]
    for k, val in rep.facts.items():
        lines.append(f"  {k}: {val}")
    lines.append(f"  invariant violations: {rep.total_violations}")
    for name, found in rep.violations.items():
        lines.append(f"    {name}: {len(found)}")
        for item in found[:10]:
            lines.append(f"      - {item}")
        if len(found) > 10:
            lines.append(f"      ... and {len(found) - 10} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    d = Config()
    ap.add_argument("--runs", type=int, default=d.runs)
    ap.add_argument("--workers", type=int, default=d.workers)
    ap.add_argument("--concurrency", type=int, default=d.concurrency)
    ap.add_argument("--lease-seconds", type=int, default=d.lease_seconds)
    ap.add_argument("--start-seconds", type=float, default=d.start_seconds)
    ap.add_argument("--chaos-seconds", type=float, default=d.chaos_seconds)
    ap.add_argument("--settle-seconds", type=float, default=d.settle_seconds)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--rate-scale", type=float, default=1.0, help="multiply every fault rate")
    ap.add_argument("--pause-share", type=float, default=d.pause_share)
    ap.add_argument("--restarts", type=int, default=d.restarts, help="stack restarts")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the workdir (logs, journal)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    cfg = Config(
        runs=a.runs,
        workers=a.workers,
        concurrency=a.concurrency,
        lease_seconds=a.lease_seconds,
        start_seconds=a.start_seconds,
        chaos_seconds=a.chaos_seconds,
        settle_seconds=a.settle_seconds,
        seed=a.seed,
        rates={k: min(1.0, x * a.rate_scale) for k, x in DEFAULT_RATES.items()},
        pause_share=a.pause_share,
        restarts=a.restarts,
        workdir=a.workdir,
        verbose=a.verbose,
    )
    outcome = run_campaign(cfg)
    report = check(outcome)
    command = "python -m tests.chaos.campaign " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print(format_report(outcome, report, command.strip()))
    if not a.keep and a.workdir is None and report.total_violations == 0:
        shutil.rmtree(outcome.workdir, ignore_errors=True)
    return 0 if report.total_violations == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
