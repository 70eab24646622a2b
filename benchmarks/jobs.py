"""Jobs (orchestrator/api/jobs.py) on the embedded stack: a backfill of many
ticks and a bulk cancel of many runs, and what the API answers meanwhile.

    python -m benchmarks.jobs [--ticks 1000] [--runs 2100]

On a fresh local stack (moto over HTTP, the API served, the sweeper every
second as `orchestrator dev` runs it, with a grace of an hour so that it leaves
the benchmark's pending runs alone):

1. A schedule `rate(1 hour)` and a backfill of `--ticks` past hours: how long
   the POST took (its own pages are bounded by `REQUEST_BUDGET_S`), how long
   until the job ended, ticks per second.
2. `--runs` runs of a workflow no worker serves (they stay pending), then a
   bulk cancel of them: the dry run's answer time, the act's answer time, the
   time until the job ended, runs per second.

Throughout, a reader thread GETs `/workflows?limit=1` every second: the
slowest answer shows whether a job holds the API (before jobs, a 1,000-tick
backfill held the local API's one request for about 3 minutes). Figures are
printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.client import Client
from orchestrator.local import LocalStack
from orchestrator.settings import Settings


class Reader(threading.Thread):
    """GETs a cheap route every second and keeps the slowest answer. (Not more
    often: moto answers every Query by reading the whole table, and a listing is
    four of them, so a reader at 10 Hz beside thousands of runs is what the
    benchmark would measure.)"""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url + "/workflows?limit=1"
        self.stop = threading.Event()
        self.slowest = 0.0
        self.count = 0

    def run(self) -> None:
        while not self.stop.wait(1.0):
            t = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=120) as resp:
                resp.read()
            self.slowest = max(self.slowest, time.perf_counter() - t)
            self.count += 1


def _wait_job(client: Client, job_id: str) -> dict[str, Any]:
    while True:
        job = client.job(job_id)
        if job["status"] != "running":
            return job
        time.sleep(0.2)


def backfill(client: Client, stack: LocalStack, ticks: int) -> dict[str, Any]:
    client.create_schedule("bench-hourly", "bench-nobody-ticks", expression="rate(1 hour)")
    now = datetime.fromtimestamp(stack.clock.now_ms() / 1000, tz=UTC)
    start = (now - timedelta(hours=ticks) + timedelta(minutes=1)).isoformat()
    t0 = time.perf_counter()
    reply = client.backfill_schedule("bench-hourly", start, now.isoformat(), wait=None)
    answered = time.perf_counter() - t0
    job = _wait_job(client, reply["job_id"])
    total = time.perf_counter() - t0
    done = job["result"]
    return {
        "ticks": done["ticks"],
        "started": done["started_count"],
        "post answered (s)": round(answered, 2),
        "post status": reply["status"],
        "until the job ended (s)": round(total, 1),
        "ticks per second": round(done["ticks"] / total, 1),
    }


def bulk(client: Client, stack: LocalStack, runs: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for i in range(runs):
        stack.service.start("bench-nobody", {"n": i})
    created = time.perf_counter() - t0
    t0 = time.perf_counter()
    dry = client.bulk("cancel", name="bench-nobody", wait=None)
    dry_answered = time.perf_counter() - t0
    counted = _wait_job(client, dry["job_id"])
    count = counted["result"]["count"]
    t0 = time.perf_counter()
    act = client.bulk("cancel", name="bench-nobody", dry_run=False, confirm_count=count, wait=None)
    act_answered = time.perf_counter() - t0
    job = _wait_job(client, act["job_id"])
    total = time.perf_counter() - t0
    return {
        "runs": runs,
        "runs created (s)": round(created, 1),
        "dry run answered (s)": round(dry_answered, 2),
        "dry run status": dry["status"],
        "counted": count,
        "act answered (s)": round(act_answered, 2),
        "act status": act["status"],
        "until the job ended (s)": round(total, 1),
        "outcomes": job["result"]["outcomes"],
        "runs per second": round(count / total, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=2100)
    a = ap.parse_args(argv)
    # A grace of an hour: the runs no worker serves are not the sweeper's within
    # the benchmark (its walk would re-send each, and compete for moto's one
    # DynamoDB lock with what is measured).
    settings = Settings().with_(sweep_grace_ms=3_600_000)
    with LocalStack(settings=settings, background_interval=1.0) as stack:
        client = Client(stack.api_url)
        reader = Reader(stack.api_url)
        reader.start()
        try:
            out = {
                "backfill": backfill(client, stack, a.ticks),
                "bulk cancel": bulk(client, stack, a.runs),
            }
        finally:
            reader.stop.set()
            reader.join(10)
        out["reads meanwhile"] = {"count": reader.count, "slowest (s)": round(reader.slowest, 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
