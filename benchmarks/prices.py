"""List prices, in one dated table. Change them here and nowhere else.

US East (N. Virginia) list prices as stated in the project's issue 6, without
free tiers; S3 request prices (S3 Standard) from the S3 price list of the same date
(https://aws.amazon.com/s3/pricing/), as docs/performance.md quotes them. The anchors are the per-unit prices of other products for the same
workload; what counts as one unit for them is in `anchor_units`.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-11-24"
REGION = "us-east-1"

PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    dynamodb_wru: float = 0.625 / PER_MILLION  # on-demand write request unit
    dynamodb_rru: float = 0.125 / PER_MILLION  # on-demand read request unit
    sqs_request: float = 0.40 / PER_MILLION  # standard queue, per request per 64 KB chunk
    # S3 Standard: PUT, COPY, POST and LIST are one tier; GET, HEAD and the rest another
    # (DELETE is free). Storage (per GB-month) is not per request and is left out.
    s3_put_request: float = 5.00 / PER_MILLION  # $0.005 per 1,000
    s3_get_request: float = 0.40 / PER_MILLION  # $0.0004 per 1,000
    scheduler_invocation: float = 1.00 / PER_MILLION  # EventBridge Scheduler
    http_api_request: float = 1.00 / PER_MILLION  # API Gateway HTTP API (per 512 KB)
    lambda_request: float = 0.20 / PER_MILLION
    lambda_gb_second: float = 0.0000166667  # x86
    api_lambda_memory_gb: float = 0.5  # infra/api.py: memory_size=512
    sweeper_lambda_memory_gb: float = 0.25  # infra/sweeper.py: memory_size=256
    sweeps_per_month: int = 60 * 24 * 30  # infra/sweeper.py: rate(1 minute)


PRICES = Prices()

# Other products, per unit (the unit is named in `anchor_units`).
ANCHORS: dict[str, dict[str, object]] = {
    "aws_step_functions_standard": {
        "price_per_unit": 25.0 / PER_MILLION,
        "unit": "state transition",
        "counting": "one transition per step (and one per sleep or signal wait in the mix)",
    },
    "temporal_cloud": {
        "price_per_unit": 50.0 / PER_MILLION,
        "unit": "action",
        "counting": "one per workflow start and one per activity "
        "(and one per timer and per signal in the mix)",
    },
    "aws_lambda_durable_functions": {
        "price_per_unit": 8.0 / PER_MILLION,
        "unit": "durable operation",
        "counting": "one per execution start and one per step (and one per wait "
        "and per callback in the mix); Lambda compute and data charges excluded",
    },
}


def anchor_units(name: str, *, workflows: int, steps: int, sleeps: int, waits: int) -> int:
    if name == "aws_step_functions_standard":
        return steps + sleeps + waits
    if name == "temporal_cloud":
        return workflows + steps + sleeps + waits
    if name == "aws_lambda_durable_functions":
        return workflows + steps + sleeps + waits
    raise KeyError(name)


# S3 bills PUT, COPY, POST and LIST requests at one price (bucket configuration
# PUTs included), GET and every other request at another; DELETE is free.
_S3_PUT_TIER = ("Put", "Create", "Copy", "Post", "List", "Upload", "Complete", "Restore")
_S3_FREE = ("Delete", "Abort")


def s3_request_price(op: str) -> float:
    """The list price of one S3 request named by its operation ("PutObject")."""
    if op.startswith(_S3_FREE):
        return 0.0
    return PRICES.s3_put_request if op.startswith(_S3_PUT_TIER) else PRICES.s3_get_request
