"""Claims that fail the same way every time (a part of `Worker`, worker/_worker.py).

A claim can end with an error before the run goes on, and not by the workflow's
own doing: an offloaded value of its history or its input gone from S3
(`ValueUnavailableError`), an input model that cannot be built (pydantic's
"not fully defined"), an exception that is not an `Exception` raised by the
workflow function (the runner does not treat it as the run's failure), an S3
or DynamoDB request refused for good (`AccessDenied`; a park write too, which
`park_run` hands over as `RunState.failure`). Left in flight, such a
run comes back after its lease and fails the same way, forever, its attempt
count rising.

So a claim ended by such an error records it on the run item, counted: one
write conditioned on the claim's epoch and the status running
(`requests.record_claim_failure`), which also keeps the lease for a backoff
(1 s, 2 s, 4 s, ...; `model.claim_retry_ms`) and hides the message as long.
The count goes on while the error is of the same type (its message may vary
from one claim to the next) and starts again at 1 with another type; a park or a continue-as-new (the run went on) and the
terminal write remove it. The claim that brings it to
`Settings.claim_failure_limit` (ORCHESTRATOR_CLAIM_FAILURE_LIMIT, default 5)
fails the run with that error instead, through the runner's ordinary terminal
write (fenced, and a child's parent is told).

Transient errors never count (throttling, 5xx, connection errors:
`orchestrator.aws.is_transient`; a timeout or a dropped connection): the claim
is left as before, and the run resumes after its lease. Neither does a claim
that lost its lease: it can write nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from orchestrator.aws import is_transient
from orchestrator.clock import Clock
from orchestrator.model import ErrorInfo, Run, Status, claim_retry_ms, next_claim_failure
from orchestrator.settings import Settings

from ._state import ContinueAsNew, ExecutionTimedOut, LeaseLost, RunState, Suspend
from ._state import error_info as _error_info
from ._store import AsyncStore

log = logging.getLogger("worker")

# The worker's own control flow (and the process being stopped): never a failure.
_CONTROL = (
    LeaseLost,
    Suspend,
    ContinueAsNew,
    ExecutionTimedOut,
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
)


def counts(e: BaseException) -> bool:
    """Whether an error that ended a claim counts toward failing the run: not a
    transient one, not the worker's own control flow."""
    if isinstance(e, _CONTROL):
        return False
    if isinstance(e, (TimeoutError, ConnectionError)):
        return False  # the network, not the run
    return not is_transient(e)


class _ClaimFailures:
    """The failed-claim half of Worker. The attributes below are Worker's."""

    settings: Settings
    clock: Clock
    _store: AsyncStore | None

    if TYPE_CHECKING:

        async def _finish(
            self,
            state: RunState,
            receipt: str,
            status: Status,
            *,
            output: str | None = None,
            error: ErrorInfo | None = None,
        ) -> None: ...

    async def _claim_failed(
        self, run: Run, state: RunState, receipt: str, e: BaseException
    ) -> None:
        """Count the error that ended this claim on the run, or fail the run with it
        (see the module doc). Call with the heartbeat stopped."""
        store = self._store
        assert store is not None
        limit = self.settings.claim_failure_limit
        error = _error_info(e)
        failure, final = next_claim_failure(run.claim_failure, error, limit)
        if final:
            note = f" (this error ended {failure.count} claims of the run in a row)"
            await self._finish(
                state, receipt, Status.FAILED, error=replace(error, message=error.message + note)
            )
            return
        now = self.clock.now_ms()
        retry_ms = claim_retry_ms(failure.count)
        state.close()
        recorded = await store.record_claim_failure(
            run.id, epoch=state.epoch, now=now, failure=failure, retry_at=now + retry_ms
        )
        if not recorded:
            state.lose()
            log.warning("run %s: claim ended by %s, and the run moved since", run.id, error.type)
            return
        log.warning(
            "run %s: claim ended by %s: %s (%d of %d in a row); the next claim in %d s",
            run.id,
            error.type,
            error.message,
            failure.count,
            limit,
            retry_ms // 1000,
            exc_info=e,
        )
        await store.set_visibility(receipt, -(-retry_ms // 1000) + 1)
