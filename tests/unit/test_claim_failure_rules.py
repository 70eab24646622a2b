"""Which errors count toward failing a run whose claims keep failing, and how
the count goes (orchestrator/model.py `next_claim_failure`,
worker/_claim_failures.py `counts`). Pure, without AWS."""

from __future__ import annotations

import asyncio

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from pydantic import BaseModel

from orchestrator.model import (
    CLAIM_RETRY_MAX_MS,
    ClaimFailure,
    ErrorInfo,
    claim_retry_ms,
    next_claim_failure,
)
from orchestrator.payloads import ValueUnavailableError
from worker._claim_failures import counts
from worker._state import ContinueAsNew, LeaseLost, StoreUnavailable, Suspend


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


def test_the_same_type_of_error_counts_up_to_the_limit_and_another_starts_again() -> None:
    gone = ErrorInfo("ValueUnavailableError", "value 1a2b… is no longer stored (expired)")
    first, final = next_claim_failure(None, gone, 3)
    assert (first, final) == (ClaimFailure(gone.type, gone.message, 1), False)
    second, final = next_claim_failure(first, gone, 3)
    assert (second.count, final) == (2, False)
    third, final = next_claim_failure(second, gone, 3)
    assert (third.count, final) == (3, True)
    # Another type of error starts the count again.
    denied = ErrorInfo("AccessDenied", "Access Denied")
    assert next_claim_failure(second, denied, 3) == (
        ClaimFailure(denied.type, denied.message, 1),
        False,
    )
    renamed = ErrorInfo("AccessDenied", gone.message)
    assert next_claim_failure(second, renamed, 3)[0].count == 1
    # The same type with another message goes on (a message may name an object's
    # address or a request id); the latest message is kept.
    other = ErrorInfo("ValueUnavailableError", "value 9f9f… does not match its digest")
    assert next_claim_failure(second, other, 3) == (
        ClaimFailure(other.type, other.message, 3),
        True,
    )
    # A limit of 1 fails the run at its first failed claim.
    assert next_claim_failure(None, gone, 1)[1]


def test_the_wait_between_failed_claims_doubles_up_to_a_minute() -> None:
    assert [claim_retry_ms(n) for n in (1, 2, 3, 4, 5)] == [1000, 2000, 4000, 8000, 16000]
    assert claim_retry_ms(7) == CLAIM_RETRY_MAX_MS == claim_retry_ms(100)


class _Unbuilt(BaseModel):
    x: Later  # type: ignore[name-defined]  # noqa: F821


def _unbuilt_error() -> Exception:
    from pydantic import TypeAdapter

    try:
        TypeAdapter(_Unbuilt).validate_json("{}")
    except Exception as e:
        return e
    raise AssertionError("the model was built")


@pytest.mark.parametrize(
    "error",
    [
        ValueUnavailableError("value 1a2b… is no longer stored (expired)"),
        _client_error("AccessDenied", 403),
        _client_error("NoSuchBucket", 404),
        _unbuilt_error(),
        KeyError("input"),
        GeneratorExit(),  # a BaseException that is not the worker's own
    ],
)
def test_deterministic_errors_count(error: BaseException) -> None:
    assert counts(error)


@pytest.mark.parametrize(
    "error",
    [
        _client_error("SlowDown", 503),
        _client_error("InternalError", 500),
        _client_error("ThrottlingException", 400),
        _client_error("ProvisionedThroughputExceededException", 400),
        EndpointConnectionError(endpoint_url="http://s3.invalid"),
        ReadTimeoutError(endpoint_url="http://s3.invalid"),
        TimeoutError(),
        ConnectionResetError(),
        # The worker's own control flow, and the process being stopped.
        LeaseLost(),
        StoreUnavailable("throttled"),
        Suspend(),
        ContinueAsNew("{}"),
        asyncio.CancelledError(),
        KeyboardInterrupt(),
        SystemExit(1),
    ],
)
def test_transient_errors_and_control_flow_never_count(error: BaseException) -> None:
    assert not counts(error)
