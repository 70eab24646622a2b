"""What GET /steps and `orchestrator steps` show for a real run whose code
gathers two asyncio tasks between two steps and takes a patched code path:
the tasks' operations where the code created them, each under a task line,
and the patch as a marker."""

from __future__ import annotations

import asyncio

from orchestrator import Client
from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_status
from worker import workflow


def _same(value: object) -> object:
    return value


@workflow("views-gather")
async def views_gather(ctx, input: object) -> list[str]:
    await ctx.step("before", _same, 0)
    if await ctx.patched("views-fix"):
        pass

    async def branch(tag: str) -> str:
        first = await ctx.step(f"{tag}-1", _same, tag)
        return await ctx.step(f"{tag}-2", _same, f"{first}!")

    got = list(await asyncio.gather(branch("A"), branch("B")))
    await ctx.step("after", _same, got)
    return got


def test_gathered_tasks_are_shown_where_the_code_created_them(stack, capsys, monkeypatch) -> None:
    from orchestrator.cli import main

    client = Client(stack.api_url)
    with BackgroundWorker([views_gather], stack.settings, clock=stack.clock):
        run = client.start("views-gather", None)
        wait_status(stack, run["id"], "completed")
    # The store lists 0, 1, 2, t0.0, ...: every task scope after every numeric id.
    assert [r.op_id for r in stack.store.steps(run["id"])][:3] == ["0", "1", "2"]
    steps = client.steps(run["id"])
    assert [(s["id"], s["name"]) for s in steps] == [
        ("0", "before"),
        ("1", "views-fix"),
        ("t0.0", "A-1"),
        ("t0.1", "A-2"),
        ("t1.0", "B-1"),
        ("t1.1", "B-2"),
        ("2", "after"),
    ]
    assert steps[1]["kind"] == "patch" and "signal" not in steps[1]
    monkeypatch.setenv("ORCHESTRATOR_API_URL", stack.api_url)
    from orchestrator.cli import format as cli_format

    # The console's width, not COLUMNS: rich reads COLUMNS once, when the console
    # is made (at the CLI's first import, in whichever test that was).
    monkeypatch.setattr(cli_format.out, "width", 160)
    assert main(["steps", run["id"]]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:] if line.strip()]
    assert [row[0] for row in rows] == ["0", "1", "t0", "t0.0", "t0.1", "t1", "t1.0", "t1.1", "2"]
    assert rows[1][1] == "patch" and "signal" not in rows[1] and rows[2][1] == "task"
