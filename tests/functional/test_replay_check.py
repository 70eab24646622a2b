"""`orchestrator replay-check`: recorded histories replayed against changed
code, read-only, through the worker's own replay code (worker/_replay.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from orchestrator.local.worker_thread import BackgroundWorker
from tests.conftest import executions
from tests.helpers import wait_status
from tests.versions import make
from tests.workflows import record
from worker import workflow
from worker._registry import definition_of
from worker._replay import check


def _variant(order: list[str]) -> Any:
    """ "shipment" with its first two steps renamed, reordered or removed."""

    @workflow("shipment")
    async def shipment(ctx: Any) -> None:
        for step in order:
            await ctx.step(step, record, ctx.workflow_id, step)
        await ctx.wait_for_signal("approval", "approve")

    return shipment


def _label_renamed() -> Any:
    """v1 with the map items' label step renamed and no patch."""

    @workflow("shipment")
    async def shipment(ctx: Any) -> None:
        async def item(c: Any, x: int, i: int) -> None:
            await c.step("pack", record, ctx.workflow_id, "pack")
            if i == 1:
                await c.sleep("early", 60)
            await c.step("label-renamed", record, ctx.workflow_id, "label")

        await ctx.step("reserve", record, ctx.workflow_id, "reserve")
        await ctx.step("charge-dollars", record, ctx.workflow_id, "charge")
        await ctx.wait_for_signal("approval", "approve")
        await ctx.map("ship", [0, 1], item)

    return shipment


def _check(stack: Any, fn: Any) -> Any:
    d = definition_of(fn)
    runs = [stack.store.get(i) for i in ("waiting", "mid-map")]
    return asyncio.run(check({d.name: d}, runs, stack.ddb, stack.settings.table))


def _in_flight(stack: Any) -> None:
    """v1 runs: one waiting for approval, one parked in the map (item 0 labelled)."""
    with BackgroundWorker([make(1)], stack.settings, clock=stack.clock):
        stack.service.start("shipment", {}, "waiting")
        stack.service.start("shipment", {}, "mid-map")
        wait_status(stack, "waiting", "waiting")
        wait_status(stack, "mid-map", "waiting")
        stack.service.signal("mid-map", "approve", None)
        wait_status(stack, "mid-map", "sleeping")


def test_replay_check_catches_reordered_renamed_and_removed_steps_and_passes_a_patch(
    stack, exec_log: Path, capsys, monkeypatch
) -> None:
    _in_flight(stack)
    before = {i: stack.store.steps(i) for i in ("waiting", "mid-map")}

    patched = _check(stack, make(2))
    assert [v.ok for v in patched.verdicts] == [True, True], patched.verdicts
    assert patched.queries == 2  # one history Query per run
    # Each replay ends where its run waits: for approval; in both map items.
    assert [v.outcome for v in patched.verdicts] == ["waits", "waits"]

    # A change inside the map's items is found in the run parked mid-map.
    inside = _check(stack, _label_renamed())
    assert [v.ok for v in inside.verdicts] == [True, False]
    assert inside.verdicts[1].operation == "3.0.1"

    cases = {
        "renamed": (["reserve", "charge-usd"], "1", "'charge-usd'"),
        "reordered": (["charge-dollars", "reserve"], "0", "'charge-dollars'"),
        "removed": (["charge-dollars"], "0", "'charge-dollars'"),
    }
    for label, (order, op, named) in cases.items():
        report = _check(stack, _variant(order))
        assert [v.ok for v in report.verdicts] == [False, False], label
        for v in report.verdicts:
            assert v.outcome == "non-determinism" and v.operation == op, (label, v)
            assert named in v.message, (label, v)  # the code's call, with the recorded one

    # The deprecation alone, deployed while runs from before the patch are in flight.
    early = _check(stack, make(3))
    assert [v.operation for v in early.failed] == ["1", "1"]

    # The command: its exit status gates a deploy.
    from orchestrator.cli import main

    for key, value in stack.exports().items():
        monkeypatch.setenv(key, value)

    def cli(module: str) -> tuple[int, dict[str, Any]]:
        code = main(["replay-check", module, "--json"])
        return code, json.loads(capsys.readouterr().out)

    code, report = cli("tests.versions.v2")
    assert code == 0 and report["checked"] == 2
    code, report = cli("tests.versions.v4")
    assert code == 1
    assert report["failed"] == 2 and report["queries"] == 2
    assert {r["operation"] for r in report["runs"]} == {"1"}

    # Nothing ran and nothing was written.
    assert executions(exec_log) == []
    assert {i: stack.store.steps(i) for i in ("waiting", "mid-map")} == before
    assert stack.store.get("waiting").status.value == "waiting"
