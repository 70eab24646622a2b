"""The conformance tier's building blocks, shared by the suites' workflows,
which live one module per suite in `workflows_<suite>.py` (the two callback
suites share `workflows_callback.py`).

Step functions and bodies call `ran(run_id, label)` each time they really
execute, so a test can tell a replay (the recorded outcome returned) from a
re-execution; the tier's fixture reads the counts with `executions`. Timers
and retry delays last an hour (`PARK`, `PARKING_RETRY`) rather than the
requirements' one or two seconds: the run then parks on a schedule that only
the skipping clock reaches, so each park is seen by the tier's driver however
slow the machine is; the durations a requirement is about (2-4, 2-5, 1-14)
are kept.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from worker import BatchResult

PARK = timedelta(hours=1)  # a wait that always parks the run

_lock = threading.Lock()
_executions: Counter[tuple[str, str]] = Counter()


def ran(run_id: str, label: str) -> int:
    """Count one real execution; returns how many there have been, this one included."""
    with _lock:
        _executions[(run_id, label)] += 1
        return _executions[(run_id, label)]


def executions(run_id: str, label: str) -> int:
    with _lock:
        return _executions[(run_id, label)]


# --- step functions ---------------------------------------------------------------------


def greet(rid: str, name: str) -> str:
    ran(rid, "greet")
    return f"Hello, {name}!"


def echo(rid: str, label: str, value: Any) -> Any:
    ran(rid, label)
    return value


def fail(rid: str, label: str) -> None:
    ran(rid, label)
    raise RuntimeError(f"{label} failed")


def flaky(rid: str, label: str, failures: int, value: Any, error: type[Exception] = RuntimeError):
    """Fails the first `failures` executions, then returns `value`."""
    if ran(rid, label) <= failures:
        raise error(f"{label}: attempt failed")
    return value


def crash_once(rid: str, label: str, marker: str, value: Any) -> Any:
    """Ends the worker process the first time (the requirements' process.exit):
    `marker` is a file that says it happened. Then counts as `label` and returns
    `value`."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed")
        os._exit(3)
    ran(rid, label)
    return value


def slow(rid: str, label: str, seconds: float) -> str:
    time.sleep(seconds)
    ran(rid, label)
    return label


def projection(batch: BatchResult[Any]) -> dict[str, Any]:
    return {
        "completionReason": batch.completion_reason.value,
        "status": batch.status,
        "successCount": batch.success_count,
        "failureCount": batch.failure_count,
        "totalCount": batch.total_count,
    }


# A retry policy whose delays park the run (the step and child suites' retries).
PARKING_RETRY = dict(initial_interval=PARK, max_interval=PARK, backoff=1.0, jitter=0.0)

LARGE = 300 * 1024  # over the 256 KB a record keeps
