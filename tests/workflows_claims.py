"""Workflows whose every claim ends before the run can go on, for reasons that
are not the workflow's own failure (tests/functional/test_claim_failures.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from worker import workflow


class Order(BaseModel):
    # A type that is never defined: the model imports, but pydantic cannot build
    # its validator, so every parse of an input raises PydanticUserError (not a
    # validation error of the input).
    item: Missing  # type: ignore[name-defined]  # noqa: F821


@workflow("claims.unbuilt_input")
async def unbuilt_input(ctx: Any, order: Order) -> str:
    return await ctx.step("never", lambda: order.item)


class GiveUp(BaseException):
    """Not an `Exception`: the runner does not take it for the run's own failure."""


@workflow("claims.base_exception")
async def base_exception(ctx: Any) -> None:
    raise GiveUp("the definition gives up before its first durable call")


CLAIMS = [unbuilt_input, base_exception]
