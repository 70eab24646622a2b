"""AWS client construction in one place: region, endpoint (the local stack's
moto server when AWS_ENDPOINT_URL is set) and the SDK retry policy.

SDK retries are bounded and in "standard" mode: throttling, 5xx and connection
errors are retried with exponential backoff and jitter, 5 attempts in all (the
first and 4 retries), under the client's retry quota. Conditional-check failures
are never retried by the SDK; the code decides what a lost race means. See
docs/reliability.md.

Fault injection is test tooling and stays off the production path:
`instrument` is the one hook, and it imports `orchestrator.testing_faults` only
when ORCHESTRATOR_FAULTS is set (the chaos campaign, the fault tests).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import resources as r
from .settings import Settings

# total_max_attempts counts the first attempt. (botocore's "max_attempts" counts
# retries only, and it rewrites the dict it is given into total_max_attempts.)
RETRIES: Any = {"mode": "standard", "total_max_attempts": 5}
# The read timeout must outlast an SQS long poll (20 s).
CLIENT_CONFIG = Config(retries=RETRIES, connect_timeout=5, read_timeout=40, max_pool_connections=50)


# Error codes botocore's standard retry mode treats as throttling or transient.
# A call that still fails with one after the SDK's retries is worth retrying
# later: the worker retries the durable call, the API answers 503.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def is_transient(e: BaseException) -> bool:
    """A failure of an AWS call that may pass if tried again later: a connection
    error or timeout, an HTTP 5xx, or a throttling code. A refused condition and
    a validation error are not."""
    if isinstance(e, BotoCoreError):
        return True  # connection errors, timeouts, a closed connection
    if isinstance(e, ClientError):
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or e.response.get("Error", {}).get("Code") in TRANSIENT_CODES
    return False


def client(service: str, settings: Settings, session: boto3.session.Session | None = None) -> Any:
    session = session or boto3.session.Session()
    c = session.client(
        service,  # type: ignore[call-overload]
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        # S3: SigV4 for presigned links too (boto3 would sign them with SigV2).
        config=CLIENT_CONFIG.merge(Config(signature_version="s3v4"))
        if service == "s3"
        else CLIENT_CONFIG,
    )
    instrument(c)
    return c


def async_client_kwargs(settings: Settings, *, max_pool_connections: int) -> dict[str, Any]:
    """Keyword arguments for an aioboto3 `session.client(service, **kw)`: the same
    region, endpoint and retry policy as `client()` (the worker's clients)."""
    from aiobotocore.config import AioConfig

    config = AioConfig(
        retries=RETRIES,
        connect_timeout=5,
        read_timeout=40,
        max_pool_connections=max_pool_connections,
    )
    return {"region_name": settings.region, "endpoint_url": settings.endpoint_url, "config": config}


def instrument(target: Any) -> None:
    """The test tooling's hook on a boto3 client or an aioboto3 session: with
    ORCHESTRATOR_FAULTS set, install its fault plan (docs/reliability.md);
    otherwise do nothing and import nothing."""
    spec = os.environ.get(r.ENV_FAULTS, "")
    if spec.strip():
        from . import testing_faults

        testing_faults.install(target, spec)
