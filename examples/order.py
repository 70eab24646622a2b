"""Retries and compensation: the payment gateway fails the first attempt, the
step is retried with backoff; if it failed for good, the reservation would be
released (compensation) and the order ends as "cancelled".

    orchestrator start order --input '{"order_id": "o-1", "amount": 42}'
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from pydantic import BaseModel

from worker import RetryPolicy, StepFailedError, workflow


class Order(BaseModel):
    order_id: str
    amount: float
    gateway_failures: int = 1  # how many attempts the simulated gateway fails


class CardDeclinedError(Exception):
    pass


_calls: Counter[str] = Counter()


def reserve_stock(order_id: str) -> str:
    return f"reservation-{order_id}"


def charge_card(order_id: str, amount: float, failures: int) -> dict[str, object]:
    _calls[order_id] += 1
    if _calls[order_id] <= failures:
        raise ConnectionError(f"payment gateway timed out (call {_calls[order_id]})")
    return {"order_id": order_id, "charged": amount}


def release_stock(reservation: str) -> str:
    return f"released {reservation}"


@workflow("order")
async def order(ctx, input: Order) -> str:
    reservation = await ctx.step("reserve", reserve_stock, input.order_id)
    try:
        await ctx.step(
            "charge",
            charge_card,
            input.order_id,
            input.amount,
            input.gateway_failures,
            retry=RetryPolicy(
                max_attempts=3,
                initial_interval=timedelta(milliseconds=200),
                backoff=2.0,
                non_retryable=[CardDeclinedError],
            ),
            timeout=timedelta(seconds=30),
        )
    except StepFailedError:
        await ctx.step("release", release_stock, reservation)
        return "cancelled"
    return "confirmed"


WORKFLOWS = [order]
