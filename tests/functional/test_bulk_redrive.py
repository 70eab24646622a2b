"""Bulk redrive (orchestrator/api/bulk.py) over real runs: the filter selects
runs in every status; failed, timed-out and cancelled ones are redriven, the
others are refused with the reason and left unchanged."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from orchestrator import resources as r
from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.errors import BadInputError, ConflictError
from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_status
from worker import NO_RETRY, workflow

FIXED = {"on": False}
HELD = threading.Event()  # the "hold" step runs until this is set
RELEASE = threading.Event()


def explode() -> str:
    if not FIXED["on"]:
        raise ValueError("bug")
    return "fixed"


def hold() -> str:
    HELD.set()
    RELEASE.wait(120)
    return "held"


@workflow("bulky")
async def bulky(ctx: Any, input: dict[str, Any]) -> str:
    mode = input["mode"]
    if mode == "fail":
        return str(await ctx.step("boom", explode, retry=NO_RETRY))
    if mode == "hold":
        return str(await ctx.step("hold", hold))
    if mode == "sleep":
        await ctx.sleep("nap", timedelta(days=1))
    return str(mode)


def _state(run: Any) -> tuple[Any, ...]:
    """What a redrive would change (a running run's heartbeat moves only its lease)."""
    return (run.status, run.epoch, run.redrive_count, run.output, run.error, run.deadline_at)


@contextlib.contextmanager
def _released() -> Iterator[None]:
    try:
        yield
    finally:
        RELEASE.set()


def test_bulk_redrive_reopens_failed_timed_out_and_cancelled_runs_and_refuses_the_rest(
    stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    client = Client(stack.api_url)
    FIXED["on"] = False
    HELD.clear()
    RELEASE.clear()
    with BackgroundWorker([bulky], stack.settings, clock=stack.clock), _released():
        # Timed out first: the clock jump must not expire the held run's lease.
        timed_out = client.start("bulky", {"mode": "sleep"}, execution_timeout=3600)["id"]
        wait_status(stack, timed_out, "sleeping")
        stack.clock.advance(3601)
        assert wait_status(stack, timed_out, "failed").error.type == "ExecutionTimeoutError"
        failed = [client.start("bulky", {"mode": "fail"})["id"] for _ in range(2)]
        completed = [client.start("bulky", {"mode": "ok"})["id"] for _ in range(2)]
        cancelled = client.start("bulky", {"mode": "sleep"})["id"]
        wait_status(stack, cancelled, "sleeping")
        client.cancel(cancelled)
        for i in failed:
            wait_status(stack, i, "failed")
        for i in completed:
            wait_status(stack, i, "completed")
        running = client.start("bulky", {"mode": "hold"})["id"]
        assert HELD.wait(30)
        other = client.start("someone-else", {})["id"]  # another name: not selected
        redrivable = {*failed, timed_out, cancelled}
        refused = {*completed, running}
        before = {i: _state(stack.store.get(i)) for i in redrivable | refused}
        assert stack.store.get(running).status.value == "running"

        # A dry run counts every run of the name, by status, and changes nothing.
        counted = client.bulk("redrive", name="bulky")
        assert counted["dry_run"] and counted["count"] == 7
        assert counted["statuses"] == {"failed": 3, "cancelled": 1, "completed": 2, "running": 1}
        assert set(counted["sample"]) == redrivable | refused
        with pytest.raises(ConflictError):
            client.bulk("redrive", name="bulky", dry_run=False, confirm_count=6)
        with pytest.raises(BadInputError, match="reason"):
            client.bulk("redrive", name="bulky", reason="x", dry_run=False, confirm_count=7)
        assert main(["bulk", "redrive", "--name", "bulky"]) == 0
        text = capsys.readouterr().out
        assert "dry run: 7 run(s) match (1 cancelled, 2 completed, 3 failed, 1 running)" in text
        assert {i: _state(stack.store.get(i)) for i in before} == before

        FIXED["on"] = True  # the fix is deployed
        assert main(["bulk", "redrive", "--name", "bulky", "--yes"]) == 0
        text = capsys.readouterr().out
        assert "redrive: 7 run(s): 4 redriven, 3 refused" in text
        lines = {line.split(":", 1)[0].strip(): line for line in text.splitlines()[1:]}
        assert set(lines) == redrivable | refused
        for i in redrivable:
            assert lines[i].endswith(f"{i}: redriven")
        assert "is completed: only a failed, timed-out or cancelled run" in lines[completed[0]]
        assert "is running: only a failed, timed-out or cancelled run" in lines[running]

        # Redriven: the failed runs run their step again (now fixed), the timed-out
        # and cancelled ones sleep again; each counts one redrive.
        for i in failed:
            wait_status(stack, i, "completed")
            assert client.get(i)["output"] == "fixed"
        for i in (timed_out, cancelled):
            assert wait_status(stack, i, "sleeping").redrive_count == 1
        assert all(stack.store.get(i).redrive_count == 1 for i in failed)
        # Refused: unchanged (the held run still runs its first attempt's step).
        assert {i: _state(stack.store.get(i)) for i in refused} == {i: before[i] for i in refused}
        assert stack.store.get(other).status.value == "pending"
        RELEASE.set()
        assert client.wait(running, timeout=60)["output"] == "held"
