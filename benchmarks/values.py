"""Large values, inline or in S3: what a step result costs at each size, measured.

For each mode and size, W runs of the `bench_value` workflow (benchmarks/workload.py)
go through the metering moto server: S steps whose results are distinct JSON strings
of the size, then one durable sleep. The sleep parks the run; the claim after it
loads the history and replays the steps, so every value is written once and read
back once, which is what a value costs: its write plus its reads on replay.

- off: no value bucket (ORCHESTRATOR_BUCKET unset). Every value stays in its
  DynamoDB record; a value above `MAX_INLINE_BYTES` is refused, so those sizes are
  reported as not possible and not run.
- on: the bucket set and a threshold below every size measured, so every step
  result is offloaded (one PutObject before its record, one GetObject per claim
  that loads it). The threshold is set on the worker's Settings: the environment
  variable's floor (1 KB) would keep the smallest sizes inline.

Both modes run on one worker process per mode, with the sizes one after the other
and the meter reset between them. Per step: the DynamoDB capacity charged to the
runs' own items (the meter's ``run_wru``/``run_rru``: start, claims, step records,
sleep, park, finish and their index entries; not the worker's registry or
flow-control reads, which are per process and time), and the S3 requests. Dollars
are those at the list prices of `benchmarks.prices`; SQS, API and Lambda charges are
the same in both modes and are left out (the main run reports them). The crossover
is where the offloaded column becomes cheaper than the inline one, interpolated
linearly between the two sizes measured in both modes that bracket it.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import resources as r

from .harness import Harness, _http
from .prices import PRICES, PRICES_AS_OF, REGION, s3_request_price
from .worker_main import OFFLOAD_BYTES_ENV

KB = 1024
MB = 1024 * KB
DEFAULT_SIZES = (100, KB, 8 * KB, 16 * KB, 64 * KB, 256 * KB, MB)
ON_THRESHOLD = 16  # bytes: below every size, above the run's output ("null")
MIN_SIZE = 32  # a value holds its run's tag and position
MODES = ("off", "on")
WORKFLOW = "bench_value"


@dataclass(frozen=True)
class ValuesConfig:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    workflows: int = 3  # per size and mode
    steps: int = 4  # per run
    sleep_seconds: float = 1.0

    def describe(self) -> str:
        return (
            f"per size and mode: {self.workflows} runs x {self.steps} steps, each step "
            "returning a distinct JSON string of the size, then a "
            f"{self.sleep_seconds:g} s durable sleep (the run parks; the claim after it "
            "replays the steps, reading each value back once); one worker process with "
            f"{self.workflows} slots"
        )


def parse_sizes(text: str) -> tuple[int, ...]:
    """ "100,1K,8K,1M" -> (100, 1024, 8192, 1048576): K and M are 1024 and 1024^2."""
    out = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)[bB]?\s*", part)
        if m is None:
            raise ValueError(f"not a size: {part!r} (use 100, 8K, 1M)")
        n = int(m.group(1)) * {"": 1, "k": KB, "m": MB}[m.group(2).lower()]
        if n < MIN_SIZE:
            raise ValueError(f"a size of at least {MIN_SIZE} bytes, not {n}")
        out.add(n)
    return tuple(sorted(out))


def size_label(n: float) -> str:
    if n >= MB and n % MB == 0:
        return f"{int(n) // MB} MB"
    if n >= KB and n % KB == 0:
        return f"{int(n) // KB} KB"
    return f"{n / KB:.1f} KB" if n >= KB else f"{n:.0f} B"


def inline_refusal(size: int) -> str | None:
    """Why a value of `size` bytes cannot stay inline, or None."""
    if size <= r.MAX_INLINE_BYTES:
        return None
    return (
        f"without a bucket a value above {size_label(r.MAX_INLINE_BYTES)} "
        f"(MAX_INLINE_BYTES, {r.MAX_INLINE_BYTES} B) is refused; DynamoDB's item limit "
        "is 400 KB"
    )


# --- measuring ----------------------------------------------------------------------------
def run_values(harness: Harness, config: ValuesConfig) -> dict[str, Any]:
    """Both modes, every size; returns the `values` entry of the bench JSON."""
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    checks: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        sizes = [s for s in config.sizes if mode == "on" or inline_refusal(s) is None]
        if sizes:
            cells[mode], checks[mode] = _run_mode(harness, config, mode, sizes)
    return figures(config, cells, checks)


def run_alone(
    harness: Harness, config: ValuesConfig, meta: dict[str, Any], out_path: Path, started: float
) -> int:
    """`python -m benchmarks --values-only`: this phase alone, its table and its JSON."""
    with harness:
        harness.log("large values")
        values = run_values(harness, config)
    meta["bench_seconds"] = time.time() - started
    print(f"Benchmark {meta['date']} on {meta['machine']}")
    print(f"command: {meta['command']}")
    print(f"prices: list prices as of {PRICES_AS_OF} ({REGION}), no free tier\n")
    print(render_values(values))
    print(f"\n(bench took {meta['bench_seconds']:.0f} s; JSON: {out_path})")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"meta": meta, "values": values}, indent=2, default=str))
    return 0


def _run_mode(
    harness: Harness, config: ValuesConfig, mode: str, sizes: list[int]
) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    from orchestrator.client import Client
    from orchestrator.local import LocalStack
    from orchestrator.settings import Settings

    harness._reset()
    stack = LocalStack(
        settings=Settings(poll_seconds=harness.poll_seconds),
        endpoint_url=harness.url,
        background_interval=harness.sweep_interval,
    )
    stack.start()
    env = stack.exports()
    if mode == "off":
        env[r.ENV_BUCKET] = ""  # empty is unset: no S3 client, nothing offloaded
    else:
        env[OFFLOAD_BYTES_ENV] = str(ON_THRESHOLD)
    out: dict[int, dict[str, Any]] = {}
    procs = []
    try:
        procs = harness._spawn(
            "benchmarks.worker_main", [f"values-{mode}"], config.workflows, env, []
        )
        client = Client(stack.api_url, timeout=60)
        for size in sizes:
            _http(f"{harness.url}/_bench/reset", "POST", {})
            ids = [f"v{mode}-{size}-{i}-{uuid.uuid4().hex[:8]}" for i in range(config.workflows)]
            harness.log(f"  values, offload {mode}: {config.workflows} runs, {size_label(size)}")

            def start(wid: str, size: int = size) -> Any:
                spec = {
                    "tag": wid.rsplit("-", 1)[1],
                    "bytes": size,
                    "steps": config.steps,
                    "sleep_seconds": config.sleep_seconds,
                }
                return client.start(WORKFLOW, spec, id=wid)

            first, last = harness._drive(ids, start, sequential=False)
            out[size] = cell(harness.meter(), config, wall_s=last - first)
        dumps = harness._terminate(procs)
        procs = []
    finally:
        if procs:
            harness._terminate(procs)
        stack.stop()
    hooks: Counter[str] = Counter()
    for d in dumps:
        for ops in d["calls"].values():
            for op, st in ops.items():
                if op.startswith("s3."):
                    hooks[op.removeprefix("s3.")] += st["sent"]
    metered = sum((Counter(c["counts"]["s3"]) for c in out.values()), Counter())
    return out, {
        "s3_requests_sent_by_worker": dict(hooks),
        "s3_requests_metered": dict(metered),
        "s3_hooks_equal_meter": +hooks == +metered,
    }


def cell(meter: dict[str, Any], config: ValuesConfig, *, wall_s: float) -> dict[str, Any]:
    """One size in one mode: per-step figures from the meter's snapshot."""
    steps = config.workflows * config.steps
    run_wru = run_rru = 0.0
    purposes: Counter[str] = Counter()
    index_writes: Counter[str] = Counter()
    for ops in meter["ops"].values():
        for st in ops.values():
            run_wru += st["run_wru"]
            run_rru += st["run_rru"]
            purposes.update(st["purposes"])
            index_writes.update(st["index_writes"])
    s3: Counter[str] = Counter()
    for ops in meter["other"].values():
        for op, n in ops.items():
            if op.startswith("s3."):
                s3[op.removeprefix("s3.")] += n
    s3_dollars = sum(n * s3_request_price(op) for op, n in s3.items())
    dollars = run_wru * PRICES.dynamodb_wru + run_rru * PRICES.dynamodb_rru + s3_dollars
    failed = sum(1 for _, status in meter["done"].values() if status != "completed")
    return {
        "possible": True,
        "wru_per_step": run_wru / steps,
        "rru_per_step": run_rru / steps,
        "s3_puts_per_step": s3["PutObject"] / steps,
        "s3_gets_per_step": s3["GetObject"] / steps,
        "s3_requests_per_step": sum(s3.values()) / steps,
        "dollars_per_million_steps": dollars / steps * 1e6,
        "steps": steps,
        "runs_failed": failed,
        "wall_s": wall_s,
        "counts": {
            "run_wru": run_wru,
            "run_rru": run_rru,
            "s3": dict(s3),
            "step_records": purposes["record step"],
            "history_loads": purposes["load history"],
            "index_writes": dict(index_writes),
            "dynamodb_by_purpose": dict(sorted(purposes.items())),
        },
        "meter_errors": meter.get("errors", []),
    }


# --- figures --------------------------------------------------------------------------------
def crossover(
    sizes: list[int], off: dict[int, float], on: dict[int, float]
) -> tuple[float | None, list[int] | None, str]:
    """(bytes, [below, above], note): where offloaded becomes cheaper than inline,
    linear between the two bracketing sizes measured in both modes."""
    both = [(s, off[s] - on[s]) for s in sizes if s in off and s in on]  # > 0: offload cheaper
    if not both:
        return None, None, "no size was measured in both modes"
    if both[0][1] >= 0:
        return None, None, f"offloaded is cheaper already at {size_label(both[0][0])}"
    for (a, da), (b, db) in itertools.pairwise(both):
        if da < 0 <= db:
            x = a + (b - a) * -da / (db - da)
            return x, [a, b], f"between {size_label(a)} and {size_label(b)}"
    return (
        None,
        None,
        f"inline is cheaper at every size measured in both modes (to {size_label(both[-1][0])})",
    )


def figures(
    config: ValuesConfig,
    cells: dict[str, dict[int, dict[str, Any]]],
    checks: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    sizes: dict[str, dict[str, Any]] = {}
    for size in config.sizes:
        row: dict[str, Any] = {"label": size_label(size)}
        for mode in MODES:
            got = cells.get(mode, {}).get(size)
            refused = inline_refusal(size) if mode == "off" else None
            row[mode] = got or {"possible": False, "reason": refused or "not measured"}
        sizes[str(size)] = row
    dollars = {
        mode: {s: c["dollars_per_million_steps"] for s, c in cells.get(mode, {}).items()}
        for mode in MODES
    }
    at, between, note = crossover(list(config.sizes), dollars["off"], dollars["on"])
    default = r.DEFAULT_OFFLOAD_BYTES
    premium = None  # what keeping a value of the default threshold's size inline costs more
    if default in dollars["off"] and default in dollars["on"]:
        premium = dollars["off"][default] - dollars["on"][default]
    return {
        "workload": config.describe(),
        "workflows": config.workflows,
        "steps_per_workflow": config.steps,
        "sleep_seconds": config.sleep_seconds,
        "modes": {
            "off": "no value bucket (ORCHESTRATOR_BUCKET unset): every value in its "
            f"DynamoDB record, refused above {r.MAX_INLINE_BYTES} B",
            "on": f"value bucket set, threshold {ON_THRESHOLD} B (on the worker's Settings): "
            "every step result in S3, its record holding a pointer",
        },
        "figures": "per step: DynamoDB WRU and RRU charged to the runs' own items, S3 "
        "requests; dollars = those at list prices (SQS, API and Lambda: the same in "
        "both modes, left out)",
        "sizes": sizes,
        "crossover_bytes": at,
        "crossover_between": between,
        "crossover_note": note,
        "default_threshold_bytes": default,
        "inline_premium_at_default_dollars_per_million_steps": premium,
        "checks": checks,
    }


# --- printing -------------------------------------------------------------------------------
def render_values(v: dict[str, Any]) -> str:
    from .report import _f, _table

    out = [
        "Large values: inline (offload off) and in S3 (offload on), per step (values)",
        f"workload: {v['workload']}",
        f"off: {v['modes']['off']}",
        f"on: {v['modes']['on']}",
        f"figures: {v['figures']}",
    ]
    rows = []
    for row in v["sizes"].values():
        line = [row["label"]]
        for mode in MODES:
            c = row[mode]
            if not c["possible"]:
                line += ["-", "-", "-", "-"]
                continue
            line += [
                _f(c["wru_per_step"], 2),
                _f(c["rru_per_step"], 2),
                f"{_f(c['s3_puts_per_step'], 2)}/{_f(c['s3_gets_per_step'], 2)}",
                _f(c["dollars_per_million_steps"], 2),
            ]
        rows.append(line)
    out.append(
        _table(
            rows,
            ["size", "off WRU", "RRU", "S3 put/get", "$/M", "on WRU", "RRU", "S3 put/get", "$/M"],
        )
    )
    for row in v["sizes"].values():
        for mode in MODES:
            if row[mode].get("reason") and not row[mode]["possible"]:
                out.append(f"{row['label']}, offload {mode}: not possible: {row[mode]['reason']}")
    default = v["default_threshold_bytes"]
    at = v["crossover_bytes"]
    if at is None:
        summary = f"crossover: none found ({v['crossover_note']})"
    else:
        summary = f"crossover: {size_label(at)} ({at:.0f} B, {v['crossover_note']})"
    summary += f"; default threshold {size_label(default)} (ORCHESTRATOR_OFFLOAD_BYTES)"
    if at is not None:
        where = "above" if default >= at else "below"
        summary += f", {abs(default - at) / KB:.1f} KB {where} the crossover"
    premium = v["inline_premium_at_default_dollars_per_million_steps"]
    if premium is not None:
        summary += (
            f"; a {size_label(default)} value kept inline costs ${premium:.2f} per million "
            "steps more than offloaded"
        )
    out.append(summary)
    problems = []
    for mode, c in v["checks"].items():
        if not c["s3_hooks_equal_meter"]:
            problems.append(f"offload {mode}: S3 requests sent and metered DIFFER")
    for row in v["sizes"].values():
        for mode in MODES:
            c = row[mode]
            if c["possible"] and (c["runs_failed"] or c["meter_errors"]):
                problems.append(f"{row['label']} offload {mode}: runs failed or meter errors")
    out.append(
        "checks: "
        + ("; ".join(problems) if problems else "S3 requests sent = metered; every run completed")
    )
    return "\n".join(out)
