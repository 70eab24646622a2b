"""Durable workflow orchestration on DynamoDB, SQS and EventBridge Scheduler.

`Client` talks to the HTTP API; the worker SDK lives in the `worker` package.
"""

from .client import Client
from .errors import (
    BadInputError,
    ConflictError,
    InboxFullError,
    NonDeterminismError,
    NotFoundError,
    OrchestratorError,
    PayloadTooLargeError,
    RetryableError,
    StepFailedError,
    TooManyJobsError,
)

__all__ = [
    "BadInputError",
    "Client",
    "ConflictError",
    "InboxFullError",
    "NonDeterminismError",
    "NotFoundError",
    "OrchestratorError",
    "PayloadTooLargeError",
    "RetryableError",
    "StepFailedError",
    "TooManyJobsError",
]
