"""The project's error hierarchy, grouped by what the caller does next.

Standard library only, so the worker SDK, the API and user code can all import
it. Each class carries its HTTP status and error code: this module is the one
table. The API answers with them (`api/app.py`), the local servers refuse with
them (`loopback.py`), and the client maps an answer back (`error_class`).

- BadInputError: the request is wrong; fix it. Nothing was written.
- NotFoundError: the run (or route) does not exist. Nothing was written.
- ConflictError: the request is well formed but clashes with stored state
  (same id, different input; a signal to a finished run). Nothing was written.
- RetryableError: a transient failure (throttling, a dependency down); retry.
  InboxFullError (429): the run's inbox is at its limit; retry once the run
  has consumed some of its signals. Nothing was written.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error the project raises on purpose."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInputError(OrchestratorError):
    code = "bad_input"
    http_status = 400


class PayloadTooLargeError(BadInputError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaTypeError(BadInputError):
    code = "unsupported_media_type"
    http_status = 415


class MethodNotAllowedError(BadInputError):
    code = "method_not_allowed"
    http_status = 405


class LengthRequiredError(BadInputError):
    code = "length_required"
    http_status = 411


class ForbiddenError(OrchestratorError):
    """A local server refused a request from another origin or host."""

    code = "forbidden"
    http_status = 403


class NotFoundError(OrchestratorError):
    code = "not_found"
    http_status = 404


class ConflictError(OrchestratorError):
    code = "conflict"
    http_status = 409


class RetryableError(OrchestratorError):
    code = "unavailable"
    http_status = 503


class InboxFullError(RetryableError):
    """A signal the run's inbox has no room for (`model.MAX_INBOX_SIGNALS`,
    `MAX_INBOX_BYTES`): retry once the run has consumed some."""

    code = "inbox_full"
    http_status = 429


class TooManyJobsError(RetryableError):
    """A bulk operation or backfill while `api.jobs.MAX_RUNNING_JOBS` jobs are
    running: retry once one has ended (`GET /jobs`)."""

    code = "too_many_jobs"
    http_status = 429


class NonDeterminismError(OrchestratorError):
    """A replay reached a different step name or kind than the one recorded at a
    position. The run fails with this message instead of mixing results."""

    code = "non_determinism"


class StepFailedError(OrchestratorError):
    """Raised into the workflow when a step's function failed. The same error is
    raised on first execution and on replay, built from the recorded outcome."""

    code = "step_failed"

    def __init__(self, step: str, error_type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.error_message = message
        self.traceback = traceback


class WorkflowCancelledError(BaseException):
    """Raised into a workflow at its next durable call after a cancel was
    requested. A BaseException like asyncio.CancelledError, so `except
    Exception` does not swallow it; catch it (or use `finally`) to run cleanup
    steps. The run ends as cancelled whatever the function does afterwards."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExecutionTimeoutError(OrchestratorError):
    """The run's execution timeout passed; the run fails with this error."""

    code = "execution_timeout"


class StepTimeoutError(OrchestratorError):
    """One attempt of a step ran longer than the step's `timeout`."""

    code = "step_timeout"


class StepInterruptedError(OrchestratorError):
    """An at-most-once step's attempt started and never ended (its worker
    stopped or lost the run): it counts as a failed attempt and is not run again."""

    code = "step_interrupted"


class NonRetryableError(Exception):
    """Raise it from a step function to fail the step at once, without retries."""


class WorkflowContextError(OrchestratorError):
    """A durable call made where it cannot work: outside a workflow, or inside a
    step function (a step is one side effect; it cannot sleep or wait)."""

    code = "context"


class ChildContextError(OrchestratorError):
    """A child context (`run_in_child_context`) or one branch or item of a batch
    (`parallel`, `map`) failed. Carries the scope's name, the operation id and the
    error it raised; recorded, so a replay raises the same error at the same point."""

    code = "child_context_failed"

    def __init__(
        self, name: str, error_type: str, message: str, traceback: str = "", op_id: str = ""
    ) -> None:
        super().__init__(f"{name!r} failed: {error_type}: {message}")
        self.name = name
        self.op_id = op_id
        self.error_type = error_type
        self.error_message = message
        self.traceback = traceback


class ChildWorkflowError(OrchestratorError):
    """Raised into a parent by `ctx.invoke` when the child run did not complete:
    it failed, was cancelled or timed out. Recorded, so a replay raises the same."""

    code = "child_workflow_failed"

    def __init__(self, child_id: str, status: str, error_type: str = "", message: str = "") -> None:
        super().__init__(f"child run {child_id!r} {status}: {error_type}: {message}")
        self.child_id = child_id
        self.status = status
        self.error_type = error_type
        self.error_message = message


class CallbackTimeoutError(OrchestratorError):
    """A callback was not completed in time: `kind` is "timeout" (its overall
    timeout, counted from its creation) or "heartbeat" (no heartbeat within its
    heartbeat timeout)."""

    code = "callback_timeout"

    def __init__(self, name: str, kind: str) -> None:
        what = (
            "no heartbeat came within its heartbeat timeout"
            if kind == "heartbeat"
            else ("it was not completed within its timeout")
        )
        super().__init__(f"callback {name!r} timed out: {what}")
        self.name = name
        self.kind = kind

    @property
    def heartbeat(self) -> bool:
        return self.kind == "heartbeat"


class CallbackFailedError(OrchestratorError):
    """The outside system completed a callback with a failure (`POST
    /callbacks/{id}/fail`): its error type and message."""

    code = "callback_failed"

    def __init__(self, name: str, error_type: str, message: str) -> None:
        super().__init__(f"callback {name!r} failed: {error_type}: {message}")
        self.name = name
        self.error_type = error_type
        self.error_message = message


class ConditionNotMetError(OrchestratorError):
    """`wait_for_condition` with a strategy from `backoff_until` ran out of attempts
    before its predicate held."""

    code = "condition_not_met"

    def __init__(self, attempts: int) -> None:
        super().__init__(f"the condition did not hold after {attempts} checks")
        self.attempts = attempts


# Statuses a gateway in front of the API answers with a body of its own (API
# Gateway's throttling and timeouts): what the caller does next.
_GATEWAY_STATUSES: dict[int, type[OrchestratorError]] = {
    429: RetryableError,
    502: RetryableError,
    504: RetryableError,
}


def _classes(base: type[OrchestratorError]) -> list[type[OrchestratorError]]:
    out = [base]
    for sub in base.__subclasses__():
        out.extend(_classes(sub))
    return out


def error_class(status: int, code: str | None = None) -> type[OrchestratorError]:
    """The error class of an HTTP answer: by the body's error code when the API
    wrote one, else by the status (the most general class with it)."""
    classes = [c for c in _classes(OrchestratorError) if c.http_status != 500]
    for c in classes:
        if code is not None and c.code == code:
            return c
    if status in _GATEWAY_STATUSES:  # a 429 without our code is the gateway's throttling
        return _GATEWAY_STATUSES[status]
    for c in classes:
        if c.http_status == status:
            return c
    return _GATEWAY_STATUSES.get(status, OrchestratorError)
