"""Numbers and JSON from outside that the standard library reads loosely: a
query parameter in other digits ("²", "٣") or of 5,000 digits, an object with a
key twice, a decimal longer than a double holds. Each is a 400 that names the
problem, and writes nothing."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from orchestrator.local import LocalStack
from tests.security._http import JSON, json_error, request


@pytest.mark.parametrize("generation", ["\u00b2", "\u0663", "1" * 5000, "-1", "1000000000"])
def test_a_generation_that_is_not_ascii_digits_in_range_is_a_400(
    stack: LocalStack, generation: str
) -> None:
    stack.service.start("greet", {"name": "n"}, "odd-1")
    path = f"/workflows/odd-1/steps?generation={quote(generation)}"
    status, _, body = request(stack.api_url, "GET", path)
    assert status == 400, body
    assert "generation must be a whole number from 0 to 999999999" in json_error(body)["message"]
    assert request(stack.api_url, "GET", "/workflows/odd-1/steps?generation=0")[0] == 200


@pytest.mark.parametrize("limit", ["\u00b2", "\u0663", "9" * 5000, "0", "201"])
def test_a_list_limit_out_of_its_range_is_a_400(stack: LocalStack, limit: str) -> None:
    status, _, body = request(stack.api_url, "GET", f"/workflows?limit={quote(limit)}")
    assert (
        status == 400
        and "limit must be a whole number from 1 to 200" in json_error(body)["message"]
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"name": "greet", "id": "odd-2", "id": "odd-3"}', "appears twice"),
        (b'{"name": "greet", "id": "odd-2", "input": {"x": 0.' + b"1" * 100_000 + b"}}", "decimal"),
    ],
)
def test_a_body_read_loosely_by_the_standard_library_is_refused(
    stack: LocalStack, body: bytes, says: str
) -> None:
    status, _, answer = request(stack.api_url, "POST", "/workflows", headers=JSON, body=body)
    assert status == 400 and says in json_error(answer)["message"]
    for run_id in ("odd-2", "odd-3"):
        assert request(stack.api_url, "GET", f"/workflows/{run_id}")[0] == 404
