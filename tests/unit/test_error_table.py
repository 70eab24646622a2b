"""errors.py is the one table of HTTP statuses and codes: the API answers with
it, the loopback guard refuses with it, and the client maps answers back."""

from __future__ import annotations

import pytest

from orchestrator import errors as e
from orchestrator.loopback import check_request


@pytest.mark.parametrize(
    "cls",
    [
        e.BadInputError,
        e.PayloadTooLargeError,
        e.UnsupportedMediaTypeError,
        e.MethodNotAllowedError,
        e.LengthRequiredError,
        e.ForbiddenError,
        e.NotFoundError,
        e.ConflictError,
        e.RetryableError,
    ],
)
def test_an_answer_maps_back_to_the_class_that_wrote_it(cls: type[e.OrchestratorError]) -> None:
    assert e.error_class(cls.http_status, cls.code) is cls


def test_without_a_code_the_status_gives_the_most_general_class() -> None:
    assert e.error_class(400) is e.BadInputError
    assert e.error_class(409) is e.ConflictError
    assert e.error_class(413) is e.PayloadTooLargeError
    # A gateway's own answers, with no body of ours.
    assert e.error_class(429) is e.RetryableError
    assert e.error_class(504) is e.RetryableError
    assert e.error_class(418) is e.OrchestratorError
    # An unknown code falls back on the status.
    assert e.error_class(404, "no_such_code") is e.NotFoundError


def test_no_two_classes_share_a_code() -> None:
    classes = [c for c in e._classes(e.OrchestratorError) if c.http_status != 500]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), codes


@pytest.mark.parametrize(
    ("headers", "cls"),
    [
        ({"Host": "evil.example"}, e.ForbiddenError),
        ({"Host": "127.0.0.1:8000", "Origin": "http://evil.example"}, e.ForbiddenError),
        ({"Host": "127.0.0.1", "Transfer-Encoding": "chunked"}, e.LengthRequiredError),
        ({"Host": "127.0.0.1", "Content-Length": "12x"}, e.BadInputError),
        ({"Host": "127.0.0.1", "Content-Length": "999"}, e.PayloadTooLargeError),
    ],
)
def test_the_loopback_guard_refuses_with_the_table(
    headers: dict[str, str], cls: type[e.OrchestratorError]
) -> None:
    refusal = check_request(headers, max_body=100)
    assert refusal is not None
    assert (refusal.status, refusal.code) == (cls.http_status, cls.code)
