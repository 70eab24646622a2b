"""Plugins (worker/plugins.py) on a real worker: log fields and context
variables reach the step function, invocation statuses follow the claim, and
a plugin that misbehaves changes no run."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_status
from worker import Worker, workflow
from worker.plugins import Attempt, Hooks, Invocation, Plugin

app = logging.getLogger("app.billing")
tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)
seen: dict[str, list[Any]] = {}


def charge(rid: str) -> str:
    app.info("charging")  # a sync step: runs in the worker's thread pool
    seen.setdefault(rid, []).append(("sync", tenant.get()))
    return "charged"


async def notify(rid: str) -> str:
    app.info("notifying")
    seen.setdefault(rid, []).append(("async", tenant.get()))
    return "notified"


@workflow("plugged")
async def plugged(ctx) -> list[str]:
    ctx.logger.info("between the steps")
    return [
        await ctx.step("charge", charge, ctx.workflow_id),
        await ctx.step("notify", notify, ctx.workflow_id),
    ]


@workflow("plugged-continues")
async def plugged_continues(ctx, n: int) -> int:
    await ctx.step("s", charge, ctx.workflow_id)
    if n:
        await ctx.continue_as_new(n - 1)
    return n


def _held(stack: Any) -> Any:
    """A lease no late heartbeat loses on a loaded machine: these tests count
    exact hook calls and log lines, which a takeover would repeat."""
    return stack.settings.with_(lease_seconds=30)


class StepTenant(Plugin):
    """The docs' example: every log line a step writes carries the tenant, and
    the step function reads it from a context variable (as an auth header)."""

    def attempt_start(self, attempt: Attempt) -> Mapping[str, Any]:
        tenant.set(attempt.workflow_id.split("-", 1)[0])
        return {"tenant": attempt.workflow_id.split("-", 1)[0]}


class Ends(Plugin):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def invocation_start(self, inv: Invocation) -> None:
        self.calls.append(("start", (inv.workflow_id, inv.generation, inv.first, inv.continued)))

    def invocation_end(self, inv: Invocation, status: str) -> None:
        self.calls.append(("end", (inv.workflow_id, inv.generation, status)))


class Broken:
    """Not a Plugin subclass: duck-typed hooks work too. Each misbehaves."""

    def invocation_start(self, inv: Invocation) -> Any:
        return 42  # not a mapping: ignored

    async def attempt_start(self, attempt: Attempt) -> None:  # a coroutine: refused
        raise AssertionError("never awaited")

    def attempt_end(self, *args: Any) -> None:
        raise RuntimeError("attempt_end fails")

    def operation_end(self, *args: Any) -> None:
        raise KeyError("operation_end fails")


def test_a_plugin_adds_a_field_to_every_step_log_line_and_a_context_variable(
    stack, json_log: io.StringIO
) -> None:
    with BackgroundWorker([plugged], _held(stack), clock=stack.clock, plugins=[StepTenant()]):
        run, _ = stack.service.start("plugged", None, "acme-1")
        wait_status(stack, run.id, "completed")
    lines = [json.loads(x) for x in json_log.getvalue().splitlines() if x.startswith("{")]
    mine = [x for x in lines if x.get("workflow_id") == run.id]
    by_message = {x["message"]: x for x in mine}
    assert by_message["charging"]["tenant"] == "acme"  # the sync step's own line
    assert by_message["notifying"]["tenant"] == "acme"  # the async step's
    assert by_message["charging"]["step"] == "charge"
    assert "tenant" not in by_message["between the steps"]  # outside any step
    assert seen[run.id] == [("sync", "acme"), ("async", "acme")]
    assert tenant.get() is None  # set in the attempt's context only


def test_invocation_ends_follow_the_claim_through_continue_as_new(stack) -> None:
    ends = Ends()
    with BackgroundWorker([plugged_continues], _held(stack), clock=stack.clock, plugins=[ends]):
        run, _ = stack.service.start("plugged-continues", 2)
        wait_status(stack, run.id, "completed")
    calls = [c for c in ends.calls if c[1][0] == run.id]
    assert calls == [
        ("start", (run.id, 0, True, False)),
        ("end", (run.id, 0, "continued")),
        ("start", (run.id, 1, True, True)),
        ("end", (run.id, 1, "continued")),
        ("start", (run.id, 2, True, True)),
        ("end", (run.id, 2, "completed")),
    ]


def test_a_misbehaving_plugin_is_logged_and_changes_no_run(stack, caplog) -> None:
    ends = Ends()
    with BackgroundWorker(
        [plugged], _held(stack), clock=stack.clock, plugins=[Broken(), ends]
    ) as bw:
        run, _ = stack.service.start("plugged", None)
        wait_status(stack, run.id, "completed")
        metrics = bw.worker.metrics
    assert stack.store.get(run.id).output == '["charged","notified"]'
    assert [c[0] for c in ends.calls if c[1][0] == run.id] == ["start", "end"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("Broken.attempt_end raised" in m for m in messages)
    assert any("Broken.operation_end raised" in m for m in messages)
    assert any("Broken.attempt_start returned an awaitable" in m for m in messages)
    # The worker's own metrics plugin, registered first, still counted both steps.
    assert metrics.value("orchestrator_steps_total", workflow="plugged", outcome="ok") == 2


def test_an_object_with_no_hook_is_not_a_plugin(stack) -> None:
    with pytest.raises(TypeError, match="is not a plugin"):
        Worker(workflows=[plugged], settings=stack.settings, plugins=[object()])
    assert not Hooks()
    assert Hooks([Ends()]).has("invocation_end") and not Hooks([Ends()]).has("attempt_end")


def test_the_worker_command_registers_plugins_by_name(stack, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        **stack.exports(),
        "PYTHONPATH": str(root),
        "ORCHESTRATOR_POLL_SECONDS": "1",
        "ORCHESTRATOR_LEASE_SECONDS": "30",  # no takeover under load: one charging line
    }
    err = (tmp_path / "stderr").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "worker",
            "tests.functional.test_plugins",
            "--plugin",
            "tests.functional.test_plugins:StepTenant",
        ],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    try:
        run, _ = stack.service.start("plugged", None, "globex-7")
        wait_status(stack, run.id, "completed", timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    lines = [
        json.loads(x) for x in (tmp_path / "stderr").read_text().splitlines() if x.startswith("{")
    ]
    charging = [x for x in lines if x["message"] == "charging"]
    assert [x.get("tenant") for x in charging] == ["globex"]


@pytest.mark.parametrize(
    "spec",
    ["no-colon", "tests.functional.test_plugins:Missing", "no.such.module:X", ":StepTenant"],
)
def test_a_plugin_that_cannot_be_loaded_is_a_clear_error(spec: str, capsys) -> None:
    import typer

    from orchestrator.cli.local import load_plugin

    with pytest.raises(typer.Exit) as e:
        load_plugin(spec)
    assert e.value.exit_code == 1
    assert f"--plugin {spec!r}" in capsys.readouterr().err
