"""AWS client construction in one place: region, endpoint (the local stack's
moto server when AWS_ENDPOINT_URL is set) and the SDK retry policy.

SDK retries are bounded and in "standard" mode: throttling and 5xx are retried
with backoff up to 5 attempts. Conditional-check failures are never retried
by the SDK; the code decides what a lost race means.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from .settings import Settings

RETRIES: Any = {"mode": "standard", "max_attempts": 5}
# The read timeout must outlast an SQS long poll (20 s).
CLIENT_CONFIG = Config(retries=RETRIES, connect_timeout=5, read_timeout=40, max_pool_connections=50)


def client(service: str, settings: Settings, session: boto3.session.Session | None = None) -> Any:
    session = session or boto3.session.Session()
    return session.client(
        service,  # type: ignore[call-overload]
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=CLIENT_CONFIG,
    )
