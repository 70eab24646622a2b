"""One workflow, "shipment", as four deploys change it: v1 the original; v2
guards two changes with `ctx.patched` (one at the root, one inside each map
item); v3 deprecates both patches; v4 removes the guards. Modules v1..v4 each
define one version, so a worker or `orchestrator replay-check` loads one.

Item 1 of the map sleeps before its label step and item 0 after it, so a run
parked in the map has one branch past the changed point and one before it.
"""

from __future__ import annotations

from typing import Any

from worker import workflow


def act(what: Any) -> Any:
    return what


def make(version: int) -> Any:
    async def label(c: Any) -> str:
        if version == 1:
            return str(await c.step("label-old", act, "old"))
        if version == 2:
            if await c.patched("label"):
                return str(await c.step("label-new", act, "new"))
            return str(await c.step("label-old", act, "old"))
        if version == 3:
            await c.deprecate_patch("label")
        return str(await c.step("label-new", act, "new"))

    async def charge(ctx: Any) -> str:
        if version == 1:
            return str(await ctx.step("charge-dollars", act, "dollars"))
        if version == 2:
            if await ctx.patched("cents"):
                return str(await ctx.step("charge-cents", act, "cents"))
            return str(await ctx.step("charge-dollars", act, "dollars"))
        if version == 3:
            await ctx.deprecate_patch("cents")
        return str(await ctx.step("charge-cents", act, "cents"))

    async def item(c: Any, x: int, i: int) -> str:
        await c.step("pack", act, x)
        if i == 1:
            await c.sleep("early", 60)
        text = await label(c)
        await c.sleep("settle", 3600)
        return text

    @workflow("shipment")
    async def shipment(ctx: Any) -> dict[str, Any]:
        await ctx.step("reserve", act, "reserved")
        money = await charge(ctx)
        await ctx.wait_for_signal("approval", "approve")
        batch = await ctx.map("ship", [0, 1], item)
        return {"charge": money, "labels": batch.get_results(), "version": version}

    return shipment
