"""Retry policy for steps."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.errors import NonRetryableError, StepTimeoutError, WorkflowContextError

# A retry delay up to this long is waited in the worker, which keeps its lease;
# a longer one parks the run through the durable timer path.
IN_WORKER_RETRY_MAX_MS = 5_000


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a step's failed attempts are retried.

    Attempt n (1-based) that fails is retried after
    min(initial_interval * backoff**(n-1), max_interval), plus or minus `jitter`
    (a fraction), unless n == max_attempts or the error is non-retryable: an
    instance of a type in `non_retryable` (types, or type names as strings), or
    a NonRetryableError.
    """

    max_attempts: int = 3
    initial_interval: timedelta = timedelta(seconds=1)
    backoff: float = 2.0
    max_interval: timedelta = timedelta(minutes=1)
    jitter: float = 0.2
    non_retryable: Sequence[type[BaseException] | str] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff < 1:
            raise ValueError("backoff must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")
        if self.initial_interval.total_seconds() < 0 or self.max_interval < self.initial_interval:
            raise ValueError("intervals must be non-negative and max_interval >= initial_interval")

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, (NonRetryableError, WorkflowContextError)):
            return False
        names = {type(exc).__name__, type(exc).__qualname__}
        for kind in self.non_retryable:
            if isinstance(kind, str):
                if kind in names:
                    return False
            elif isinstance(exc, kind):
                return False
        return True

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        base = self.initial_interval.total_seconds() * (self.backoff ** (attempt - 1))
        base = min(base, self.max_interval.total_seconds())
        spread = (rng or random).uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(0, int(base * (1 + spread) * 1000))


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)

__all__ = ["DEFAULT_RETRY", "NO_RETRY", "NonRetryableError", "RetryPolicy", "StepTimeoutError"]
