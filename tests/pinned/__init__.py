"""One pinned workflow, "ledger", as builds change it. `make(build)` returns the
build's code: each step returns the build's label, so a run's output tells which
build ran each step. Modules `b` (a compatible change: same operations) and
`b_renamed` (the opening step renamed) define the second build for
`orchestrator migrate --module`."""

from __future__ import annotations

from typing import Any

from worker import workflow


def act(what: Any) -> Any:
    return what


def make(build: str, *, first: str = "open") -> Any:
    @workflow("ledger", versioning="pinned")
    async def ledger(ctx: Any, input: Any = None) -> dict[str, str]:
        opened = await ctx.step(first, act, build)
        await ctx.sleep("nap", 3600)
        closed = await ctx.step("close", act, build)
        return {"open": str(opened), "close": str(closed)}

    return ledger
