"""Recurring schedules end to end: the API, the scheduler emulator on the
skipping clock, the sweeper's catch-up, and a worker."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.testing import WorkflowTestEnvironment
from worker import workflow


@workflow("nightly-job")
async def nightly_job(ctx, input: dict) -> str:
    return await ctx.step("work", lambda: f"done {ctx.workflow_id}")


@workflow("long-job")
async def long_job(ctx, input: dict) -> str:
    await ctx.sleep("hold", timedelta(hours=float(input.get("hours", 30))))
    return "done"


def _runs(env: WorkflowTestEnvironment, prefix: str) -> list[dict]:
    page = env.client.list(limit=200)
    return [r for r in page["workflows"] if r["id"].startswith(prefix)]


def test_a_skipped_week_shows_seven_nightly_runs() -> None:
    with WorkflowTestEnvironment(workflows=[nightly_job]) as env:
        created = env.client.create_schedule(
            "nightly",
            "nightly-job",
            {"k": 1},
            expression="cron(0 2 * * ? *)",
            timezone="Europe/Paris",
        )
        assert created["state"] == "active"
        assert len(created["next_fire_times"]) == 3
        env.skip(timedelta(days=7))
        runs = _runs(env, "sched-nightly-")
        assert len(runs) == 7
        for r in runs:
            assert env.client.wait(r["id"], timeout=20)["status"] == "completed"
        listed = env.client.schedules()
        assert [s["name"] for s in listed] == ["nightly"]
        recent = listed[0]["recent"]
        assert [e["outcome"] for e in recent[:7]] == ["started"] * 7
        assert all(e["status"] == "completed" for e in recent[:7])
