"""A property-based fuzz of every route in GET /openapi.json, with schemathesis,
against the local stack: valid requests (positive) and requests that break the
schema (negative: wrong types, missing fields, bad ids, extra properties).

Every answer must be below 500; every 4xx must be the JSON error shape; a
refused request must write nothing (the table and the queue are compared
before and after). Bounded (`EXAMPLES` per route and mode, derandomized) so
the tier stays fast and repeatable. Figures per route are printed with -s.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from orchestrator.api.openapi import OPERATIONS, document
from orchestrator.local import LocalStack
from tests.security._state import footprint

# Per route and mode; ORCHESTRATOR_FUZZ_EXAMPLES=200 for a deeper run by hand.
EXAMPLES = int(os.environ.get("ORCHESTRATOR_FUZZ_EXAMPLES", "10"))
SCHEMA = schemathesis.openapi.from_dict(document())
STATS: dict[str, Counter[int]] = defaultdict(Counter)
# Routes whose inputs admit no invalid request (no body, no query parameter, and
# path parameters any string fills): schemathesis finds no negative case for
# them. The test holds this list exact both ways.
NO_NEGATIVE = {
    ("GET", "/"),
    ("GET", "/openapi.json"),
    ("GET", "/dashboard/{file}"),
    ("GET", "/schedules"),
    ("GET", "/schedules/{name}"),
    ("DELETE", "/schedules/{name}"),
    ("GET", "/queues"),
}


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    total = sum(sum(c.values()) for c in STATS.values())
    print(f"\nschemathesis: {len(STATS)} route/mode pairs, {total} requests")
    for key, counts in sorted(STATS.items()):
        print(f"  {key:55} {dict(sorted(counts.items()))}")


def _check(stack: LocalStack, case: Any, before: tuple[int, str, str] | None) -> int:
    response = case.call(base_url=stack.api_url, timeout=10)
    status = response.status_code
    assert status < 500, f"{case.method} {case.formatted_path}: {status} {response.text[:300]}"
    documented = document()["paths"][case.path][case.method.lower()]["responses"]
    assert str(status) in documented, f"{case.method} {case.path}: {status} is not documented"
    headers = {k.lower(): v[0] for k, v in response.headers.items()}
    if 400 <= status < 500 and case.method != "HEAD":
        assert headers["content-type"].startswith("application/json")
        error = json.loads(response.text)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if before is not None and status >= 400:
        assert footprint(stack) == before, f"a refused {case.method} {case.path} wrote something"
    assert headers["x-content-type-options"] == "nosniff"
    return status


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(
    "method,path", [(op.method, op.path) for op in OPERATIONS], ids=lambda v: str(v)
)
def test_every_route_answers_cleanly(
    sec_stack: LocalStack, method: str, path: str, mode: GenerationMode
) -> None:
    strategy = SCHEMA[path][method].as_strategy(generation_mode=mode)
    key = f"{method} {path} [{mode.value}]"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Any) -> None:
        before = footprint(sec_stack) if method == "POST" else None
        status = _check(sec_stack, case, before)
        # A request the document allows is never refused for its form (the
        # document once made the cancel body optional, which the API refuses: 415).
        assert mode != GenerationMode.POSITIVE or status not in (405, 413, 415), key
        STATS[key][status] += 1

    expect_none = mode == GenerationMode.NEGATIVE and (method, path) in NO_NEGATIVE
    try:
        run()
    except Unsatisfiable:
        assert expect_none, f"no {mode.value} request was generated for {key}"
        return
    assert not expect_none, f"{key} has negative requests now: take it out of NO_NEGATIVE"


def test_the_conflicts_the_api_answers_are_in_the_document(sec_stack: LocalStack) -> None:
    """Each 409 a route answers is one its operation documents (status-code
    conformance: a client generated from the document knows the answer)."""
    from tests.security._http import JSON, request

    def post(path: str, body: dict[str, Any]) -> int:
        return request(
            sec_stack.api_url, "POST", path, headers=JSON, body=json.dumps(body).encode()
        )[0]

    answers = {
        "/workflows": [
            post("/workflows", {"name": "greet", "id": "c409", "input": {"n": i}}) for i in (1, 2)
        ][1],
        "/workflows/{workflow_id}/redrive": post("/workflows/c409/redrive", {}),
    }
    assert post("/workflows/c409/cancel", {}) == 200
    answers["/workflows/{workflow_id}/signals"] = post("/workflows/c409/signals", {"name": "go"})
    for path, status in answers.items():
        assert status == 409, (path, status)
        assert "409" in document()["paths"][path]["post"]["responses"], path
