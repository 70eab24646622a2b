"""From phase results to numbers, dollars and the printed table."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from typing import Any

from .harness import PhaseResult
from .meter_server import READ_OPS, WRITE_OPS
from .prices import ANCHORS, PRICES, PRICES_AS_OF, anchor_units, s3_request_price
from .values import render_values

EMULATOR_ROLE = "scheduler-emulator"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def latencies(meter: dict[str, Any]) -> dict[str, Any]:
    """Start -> first step record, and step record -> next step record (ms)."""
    first: list[float] = []
    between: list[float] = []
    for wid, created in meter.get("created", {}).items():
        records = sorted(meter.get("steps", {}).get(wid, []), key=lambda r: r[1])
        steps = [r for r in records if r[2] == "step"]
        if steps and steps[0][1] == 0:
            first.append((steps[0][0] - created) * 1000)
        for a, b in itertools.pairwise(records):
            if a[2] == "step" and b[2] == "step" and b[1] == a[1] + 1:
                between.append((b[0] - a[0]) * 1000)

    def stats(v: list[float]) -> dict[str, Any]:
        return {"n": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)}

    return {"start_to_first_step": stats(first), "step_to_step": stats(between)}


def _is_emulation(who: str, op: str) -> bool:
    """Calls that exist only because moto does not fire schedules: the emulator's
    reads of the Scheduler API and its queue-URL lookup. Its SendMessage is what
    EventBridge Scheduler itself would do (billed as an invocation + an SQS send)."""
    return who == EMULATOR_ROLE and op != "sqs.SendMessage"


def summarize(r: PhaseResult) -> dict[str, Any]:
    w = r.workload
    steps = w.steps_total
    # --- DynamoDB, from the meter ---
    writes = reads = 0
    wru_table = wru_index = rru = 0.0
    index_writes: dict[str, int] = defaultdict(int)
    purposes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_role_ddb: dict[str, int] = defaultdict(int)
    sweeper_reads = 0  # the sweeper's walk and index reads: per run, not on a step's path
    emulator_s: dict[str, float] = defaultdict(float)
    for who, ops in r.meter.get("ops", {}).items():
        for op, st in ops.items():
            by_role_ddb[who] += st["requests"]
            emulator_s[op] += st.get("emulator_s", 0.0)
            if op in WRITE_OPS:
                writes += st["requests"]
            elif op in READ_OPS:
                reads += st["requests"]
                if who == "sweeper":
                    sweeper_reads += st["requests"]
            wru_table += st["wru_table"]
            wru_index += st["wru_index"]
            rru += st["rru"]
            for ix, n in st["index_writes"].items():
                index_writes[ix] += n
            for p, n in st["purposes"].items():
                purposes[p]["count"] += n
    load_history = purposes.get("load history", {}).get("count", 0)
    # A worker's read of a task queue's flow-control limits: every 5 s, per worker.
    queue_limits = purposes.get("get QUEUES", {}).get("count", 0)
    # Reads on a run's own path after its claim: the history load is the claim's,
    # the sweeper's reads are once per run (its walk), not per step, and the
    # limits' reads are per worker and time, on no run's path.
    # A worker's start reads (the registry, and the recent pending runs of names no
    # other worker serves: worker/_handoff.py) are once per worker, not per step.
    worker_start_reads = sum(
        st["purposes"].get(p, 0)
        for who, ops in r.meter.get("ops", {}).items()
        if who != "sweeper"
        for st in ops.values()
        for p in ("query WORKERS", "query index by_created")
    )
    reads_after_claim = reads - load_history - sweeper_reads - queue_limits - worker_start_reads

    # --- every call, from the hooks ---
    sent_by_service: dict[str, int] = defaultdict(int)
    emulation = 0
    idle_receives = 0
    received = 0
    scheduler_invocations = 0
    calls_table: dict[str, dict[str, int]] = {}
    client_ddb: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    s3_dollars = 0.0  # priced by operation (PUT and GET tiers)
    for who, ops in r.calls.items():
        for op, st in ops.items():
            calls_table.setdefault(who, {})[op] = st["sent"]
            if op.startswith("s3."):
                s3_dollars += st["sent"] * s3_request_price(op.removeprefix("s3."))
            for code, n in st["errors"].items():
                errors[f"{op} {code}"] += n
            if op.startswith("dynamodb."):
                client_ddb[who] += st["sent"]
            if _is_emulation(who, op):
                emulation += st["sent"]
                continue
            sent_by_service[op.split(".")[0]] += st["sent"]
            if op == "sqs.ReceiveMessage":
                received += st["messages"]
                # A long poll cut short at shutdown was sent but never answered:
                # it is idle too (it would have come back empty).
                idle_receives += st["empty_receives"] + (st["sent"] - st["calls"])
            if who == EMULATOR_ROLE and op == "sqs.SendMessage":
                scheduler_invocations += st["sent"]
    aws_requests = sum(sent_by_service.values())
    consistent = all(client_ddb.get(k, 0) == v for k, v in by_role_ddb.items()) and all(
        by_role_ddb.get(k, 0) == v for k, v in client_ddb.items()
    )

    # --- money ---
    api_requests = r.api_requests
    mean_api_s = statistics.fmean(r.api_latency_s) if r.api_latency_s else 0.0
    # Lambda bills the handler's duration. Under the benchmark's burst the API
    # waits for the saturated, serialized emulator (see api_mean_latency_ms), which
    # a Lambda on DynamoDB would not; the bill uses the median duration of starts
    # sent one at a time on the quiet emulator, rounded up to the millisecond.
    unloaded = percentile(r.api_unloaded_latency_s, 50)
    billed_ms = math.ceil((unloaded if unloaded is not None else mean_api_s) * 1000)
    lambda_gb_s = api_requests * billed_ms / 1000 * PRICES.api_lambda_memory_gb
    lambda_gb_s += r.sweep_seconds * PRICES.sweeper_lambda_memory_gb
    lambda_invocations = api_requests + r.sweeps
    dollars = {
        "dynamodb_writes": (wru_table + wru_index) * PRICES.dynamodb_wru,
        "dynamodb_reads": rru * PRICES.dynamodb_rru,
        "sqs": sent_by_service.get("sqs", 0) * PRICES.sqs_request,
        "s3": s3_dollars,
        "eventbridge_scheduler": scheduler_invocations * PRICES.scheduler_invocation,
        "api_gateway": api_requests * PRICES.http_api_request,
        "lambda": lambda_invocations * PRICES.lambda_request
        + lambda_gb_s * PRICES.lambda_gb_second,
    }
    total = sum(dollars.values())
    per_million = {k: v / steps * 1e6 for k, v in dollars.items()}
    sleeps = w.workflows if w.mix else 0
    anchors = {
        name: anchor_units(name, workflows=w.workflows, steps=steps, sleeps=sleeps, waits=sleeps)
        * float(spec["price_per_unit"])  # type: ignore[arg-type]
        / steps
        * 1e6
        for name, spec in ANCHORS.items()
    }
    return {
        "name": r.name,
        "engine": r.engine,
        "workload": {
            "workflows": w.workflows,
            "steps_per_workflow": w.steps,
            "worker_processes": w.workers,
            "slots_per_worker": w.concurrency,
            "result_bytes": w.result_bytes,
            "mix": w.mix,
            "max_concurrency": w.max_concurrency,
        },
        "steps_total": steps,
        "wall_s": r.wall_s,
        "steps_per_s": steps / r.wall_s if r.wall_s else None,
        "wall_ms_per_step": r.wall_s * 1000 / steps,
        "aws_requests": aws_requests,
        "aws_requests_per_step": aws_requests / steps,
        "aws_requests_by_service": dict(sent_by_service),
        "emulation_only_requests": emulation,
        "dynamodb_writes": writes,
        "dynamodb_reads": reads,
        "dynamodb_writes_per_step": writes / steps,
        "dynamodb_reads_per_step": reads / steps,
        "dynamodb_reads_after_claim_per_step": reads_after_claim / steps,
        "wru_table": wru_table,
        "wru_index": wru_index,
        "index_writes": dict(index_writes),
        "wru_per_step": (wru_table + wru_index) / steps,
        "rru_per_step": rru / steps,
        "wru_per_workflow": (wru_table + wru_index) / w.workflows,
        "sqs_requests_per_workflow": sent_by_service.get("sqs", 0) / w.workflows,
        "sqs_idle_receives": idle_receives,
        "sqs_messages_received": received,
        "scheduler_invocations": scheduler_invocations,
        "api_requests": api_requests,
        "api_mean_latency_ms": mean_api_s * 1000,
        "api_billed_ms_per_request": billed_ms if api_requests else 0,
        "lambda_invocations": lambda_invocations,
        "lambda_gb_seconds": lambda_gb_s,
        "sweeps_during_run": r.sweeps,
        "dollars_total": total,
        "dollars_per_million_steps": total / steps * 1e6,
        "dollars_per_million_steps_by_service": per_million,
        "anchors_dollars_per_million_steps": anchors,
        "latency": latencies(r.meter),
        "calls_by_process": calls_table,
        "dynamodb_by_purpose": {k: v["count"] for k, v in sorted(purposes.items())},
        "errors": dict(errors),
        "accounting_consistent": consistent,
        "meter_errors": r.meter.get("errors", []),
        "emulator_dynamodb_seconds_by_op": dict(emulator_s),
        "cpu_seconds": r.cpu_s,
        "idle_sweep": _idle_sweep(r.idle_sweep),
    }


def _idle_sweep(idle: dict[str, Any]) -> dict[str, Any]:
    if not idle:
        return {}
    requests = sum(st["sent"] for ops in idle["calls"].values() for st in ops.values())
    rru = sum(st["rru"] for ops in idle["meter"].values() for st in ops.values())
    seconds = float(idle["seconds"])
    per_sweep = (
        rru * PRICES.dynamodb_rru
        + PRICES.lambda_request
        + seconds * PRICES.sweeper_lambda_memory_gb * PRICES.lambda_gb_second
    )
    return {
        "requests": requests,
        "rru": rru,
        "seconds": seconds,
        "dollars_per_sweep": per_sweep,
        "dollars_per_month": per_sweep * PRICES.sweeps_per_month,
    }


def idle_receive_dollars_per_month(poll_seconds: int) -> float:
    """One worker process long-polling an empty queue for a month."""
    return 30 * 24 * 3600 / poll_seconds * PRICES.sqs_request


# --- printing ----------------------------------------------------------------------------------
def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(h).ljust(widths[i]) for i, h in enumerate(header)), line]
    for r in rows:
        out.append(
            "  ".join(
                str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                for i, c in enumerate(r)
            )
        )
    return "\n".join(out)


def render(result: dict[str, Any]) -> str:
    ours = result["ours"]
    floor = result.get("floor")
    out: list[str] = []
    meta = result["meta"]
    out.append(f"Benchmark {meta['date']} on {meta['machine']}")
    out.append(f"command: {meta['command']}")
    out.append(f"workload: {meta['workload']}")
    out.append(f"prices: list prices as of {PRICES_AS_OF} ({meta['region']}), no free tier")
    out.append("")

    def ratio(a: Any, b: Any) -> str:
        return f"{a / b:.2f}x" if a is not None and b else "-"

    rows = []
    metrics = [
        ("wall time (s)", "wall_s", 2),
        ("throughput (steps/s)", "steps_per_s", 1),
        ("AWS requests", "aws_requests", 0),
        ("AWS requests per step", "aws_requests_per_step", 3),
        ("DynamoDB writes per step", "dynamodb_writes_per_step", 3),
        ("DynamoDB reads per step", "dynamodb_reads_per_step", 3),
        ("  reads after the claim, per step", "dynamodb_reads_after_claim_per_step", 3),
        ("WRU per step (table + index)", "wru_per_step", 3),
        ("RRU per step", "rru_per_step", 3),
        ("SQS requests per workflow", "sqs_requests_per_workflow", 2),
        ("  of which idle receives (total)", "sqs_idle_receives", 0),
        ("$ per million steps, all-in", "dollars_per_million_steps", 3),
    ]
    for label, key, digits in metrics:
        a = ours.get(key)
        b = floor.get(key) if floor else None
        shown = ratio(a, b)
        if key == "wall_s" and result.get("wall_ratio_to_floor"):
            pairs = ", ".join(f"{x:.2f}" for x in result.get("wall_ratio_to_floor_pairs", []))
            shown = f"{result['wall_ratio_to_floor']:.2f}x (median of pairs {pairs})"
        rows.append(
            [
                label,
                _f(a if digits else int(a or 0), digits) if a is not None else "-",
                _f(b if digits else int(b or 0), digits) if b is not None else "-",
                shown if key != "sqs_idle_receives" else "",
            ]
        )
    runs = result.get("wall_s_runs", {})
    walls = "; ".join(f"{k} " + ", ".join(f"{x:.2f}" for x in v) for k, v in runs.items() if v)
    out.append(
        "Engine vs floor (same moto server, same K and slots). Runs alternate; the columns "
        f"show the median run of {len(runs.get('ours', [])) or 1} (wall s: {walls})"
    )
    out.append(_table(rows, ["", "ours", "floor", "ours/floor"]))
    out.append("")

    w = ours["workload"]["workflows"]
    out.append("AWS requests per workflow, by process and operation (ours)")
    rows = []
    for who, ops in sorted(ours["calls_by_process"].items()):
        for op, n in sorted(ops.items()):
            note = " (emulation only, not billed)" if _is_emulation(who, op) else ""
            rows.append([f"{who} {op}{note}", _f(n / w, 3)])
    out.append(_table(rows, ["process / operation", "per workflow"]))
    out.append("")

    out.append("DynamoDB requests by purpose, per workflow (ours)")
    rows = [[p, _f(n / w, 3)] for p, n in ours["dynamodb_by_purpose"].items()]
    ix = ", ".join(f"{k} {v / w:.2f}" for k, v in sorted(ours["index_writes"].items()))
    out.append(_table(rows, ["purpose", "per workflow"]))
    out.append(
        f"WRU per workflow: {ours['wru_per_workflow']:.2f} "
        f"(table {ours['wru_table'] / w:.2f}, index {ours['wru_index'] / w:.2f}; "
        f"index writes per workflow: {ix or 'none'})"
    )
    out.append("")

    out.append("Dollars per million steps")
    rows = [
        [k, _f(v, 4), _f(floor["dollars_per_million_steps_by_service"].get(k), 4) if floor else "-"]
        for k, v in ours["dollars_per_million_steps_by_service"].items()
    ]
    rows.append(
        [
            "total (ours, all-in)",
            _f(ours["dollars_per_million_steps"], 4),
            _f(floor["dollars_per_million_steps"], 4) if floor else "-",
        ]
    )
    for name, v in ours["anchors_dollars_per_million_steps"].items():
        rows.append([f"anchor: {name}", _f(v, 2), ""])
    out.append(_table(rows, ["", "ours", "floor"]))
    out.append(
        f"API Lambda billed at {ours['api_billed_ms_per_request']} ms x "
        f"{PRICES.api_lambda_memory_gb * 1024:.0f} MB per request (median of starts sent one at "
        f"a time; under the burst the mean was {ours['api_mean_latency_ms']:.0f} ms, queueing "
        "on the serialized emulator)"
    )
    idle = ours.get("idle_sweep") or {}
    if idle:
        out.append(
            f"fixed, not per step: one sweep = {idle['requests']} requests, {idle['rru']:.1f} RRU, "
            f"{idle['seconds'] * 1000:.0f} ms -> ${idle['dollars_per_month']:.3f}/month at 1/min; "
            f"an idle worker's long polls ${result['meta']['idle_worker_dollars_per_month']:.3f}"
            "/month"
        )
    out.append("")

    def lat_row(label: str, lat: dict[str, Any]) -> list[str]:
        a, b = lat["start_to_first_step"], lat["step_to_step"]
        return [
            label,
            _f(a["p50_ms"], 1),
            _f(a["p99_ms"], 1),
            _f(b["p50_ms"], 1),
            _f(b["p99_ms"], 1),
        ]

    rows = [lat_row("ours, main run (burst of starts)", ours["latency"])]
    if floor:
        rows.append(lat_row("floor, main run", floor["latency"]))
    for who, lat in result.get("latency_one_at_a_time", {}).items():
        rows.append(lat_row(f"{who}, one run at a time", lat))
    out.append("Latency (ms)")
    out.append(_table(rows, ["", "start->1st step p50", "p99", "step->step p50", "p99"]))
    out.append("")

    if result.get("growth"):
        out.append(f"Growth in S ({result['growth_note']})")
        rows = [
            [
                str(g["steps_per_workflow"]),
                str(g["workflows"]),
                _f(g["writes_per_step"], 3),
                _f(g["reads_per_step"], 3),
                _f(g["reads_after_claim_per_step"], 3),
                _f(g["wru_per_step"], 3),
                _f(g["rru_per_step"], 3),
                _f(g["wall_ms_per_step"], 2),
                _f(g["dollars_per_million_steps"], 3),
            ]
            for g in result["growth"]
        ]
        out.append(
            _table(
                rows,
                [
                    "S",
                    "W",
                    "writes/step",
                    "reads/step",
                    "reads after claim",
                    "WRU/step",
                    "RRU/step",
                    "wall ms/step",
                    "$/M steps",
                ],
            )
        )
        out.append("")
    fan = result.get("fanout_inline")
    if fan:
        out.append(f"Fan-out in one run: {fan['items']} one-step items (fanout_inline)")
        rows = [
            [
                label,
                _f(side["wall_s"], 2),
                _f(side["writes_per_item"], 3),
                _f(side["wru_per_item"], 3),
                _f(side["reads_per_item"], 3),
                _f(side["dollars_per_million_items"], 3),
            ]
            for label, side in (("ctx.map", fan["map"]), ("sequential", fan["sequential"]))
        ]
        out.append(
            _table(rows, ["shape", "wall s", "writes/item", "WRU/item", "reads/item", "$/M items"])
        )
        out.append(f"map wall time / sequential: {_f(fan['wall_ratio_map_to_sequential'], 2)}x")
        out.append("")
    bat = result.get("batched")
    if bat:
        out.append("Batched checkpoints (batched) next to one record per step (default)")
        rows = [
            [
                label,
                str(side["steps_per_workflow"]),
                str(side["workflows"]),
                _f(side["writes_per_step"], 3),
                _f(side["wru_per_step"], 3),
                _f(side["dollars_per_million_steps"], 3),
            ]
            for label, side in bat["runs"].items()
        ]
        out.append(_table(rows, ["runs", "S", "W", "writes/step", "WRU/step", "$/M steps"]))
        m = bat.get("map")
        if m:
            out.append(
                f"map of {m['items']} one-step items: batched "
                f"{_f(m['map']['writes_per_item'], 3)} writes and "
                f"{_f(m['map']['wru_per_item'], 3)} WRU per item, "
                f"${_f(m['map']['dollars_per_million_items'], 3)}/M items; unbatched "
                f"{_f(m['sequential']['writes_per_item'], 3)} writes, "
                f"{_f(m['sequential']['wru_per_item'], 3)} WRU, "
                f"${_f(m['sequential']['dollars_per_million_items'], 3)}/M items"
            )
        out.append("")
    dist = result.get("fanout_distributed")
    if dist:
        out.append(
            f"Distributed map: {dist['items']} one-step child runs over 2 worker processes, "
            f"max_concurrency {dist.get('max_concurrency') or 'none'} "
            "(fanout_distributed), next to as many independent runs"
        )
        rows = [
            [
                "distributed map",
                _f(dist["wall_s"], 2),
                _f(dist["writes_per_item"], 3),
                _f(dist["sqs_requests_per_item"], 3),
                _f(dist["dollars_per_million_items"], 3),
            ],
            [
                "independent runs",
                _f(dist["floor_wall_s"], 2),
                _f(dist["floor"]["writes_per_item"], 3),
                _f(dist["floor"]["sqs_requests_per_item"], 3),
                _f(dist["floor"]["dollars_per_million_items"], 3),
            ],
        ]
        out.append(_table(rows, ["shape", "wall s", "writes/item", "SQS/item", "$/M items"]))
        out.append(
            f"wall time / independent runs: {_f(dist['wall_ratio_to_floor'], 2)}x "
            "(targets: <= 1.3x, <= 4 writes and <= 3 SQS requests per item)"
        )
        out.append("")
    if result.get("scaling"):
        out.append(f"Throughput in K ({result['scaling_note']})")
        rows = [
            [
                str(k["worker_processes"]),
                _f(k["steps_per_s"], 1),
                _f(k["wall_s"], 2),
                _f(k["start_to_first_step_p50_ms"], 1),
                _f(k["start_to_first_step_p99_ms"], 1),
                _f(k["step_to_step_p50_ms"], 1),
                _f(k["step_to_step_p99_ms"], 1),
            ]
            for k in result["scaling"]
        ]
        out.append(
            _table(
                rows,
                [
                    "K",
                    "steps/s",
                    "wall s",
                    "start->1st p50",
                    "p99",
                    "step->step p50",
                    "p99",
                ],
            )
        )
        out.append("")
    if result.get("values"):
        out.append(render_values(result["values"]))
        out.append("")
    out.append("Targets (reported, not asserted)")
    rows = [
        [t["target"], t["measured"], "met" if t["met"] else "MISSED"] for t in result["targets"]
    ]
    out.append(_table(rows, ["target", "measured", ""]))
    checks = []
    if not ours["accounting_consistent"]:
        checks.append("hook counts and meter counts of DynamoDB requests DISAGREE")
    if ours["meter_errors"]:
        checks.append(f"meter errors: {ours['meter_errors'][:3]}")
    if ours["errors"]:
        checks.append(f"AWS errors (ours): {ours['errors']}")
    out.append(
        "checks: "
        + ("; ".join(checks) if checks else "hook counts = meter counts per process; no errors")
    )
    return "\n".join(out)
