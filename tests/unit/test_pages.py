"""The rules that bound every answer (orchestrator/api/pages.py), without AWS:
a value's size as Lambda sends it, how a page is cut, cursors, and the edge's
check of every answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.api import edge
from orchestrator.api.pages import (
    MAX_RESPONSE_BYTES,
    decode_cursor,
    encode_cursor,
    page_query,
    sent_size,
    take,
)
from orchestrator.errors import BadInputError
from orchestrator.store.pages import Position


@pytest.mark.parametrize(
    "value", ["plain", 'quo"te', "back\\slash", "é" * 10, "😀", {"a": [1, 2.5]}]
)
def test_sent_size_is_the_bytes_inside_lambdas_response(value: Any) -> None:
    body = json.dumps(value, separators=(",", ":"))
    assert sent_size(value) == len(json.dumps(body)) - 2  # the string's own quotes aside


def test_non_ascii_text_is_sent_larger_than_it_is_stored() -> None:
    stored = json.dumps("é" * 1000, ensure_ascii=False).encode()
    assert sent_size("é" * 1000) > 3 * len(stored)  # \u00e9, escaped again: 7 bytes a char


def _records(n: int, size: int) -> Any:
    for i in range(n):
        yield Position(0, f"k{i}"), "x" * size


def _render(text: str) -> dict[str, Any]:
    return {"v": text}


def test_a_page_stops_at_its_limit_and_names_where_to_go_on() -> None:
    page, after = take(_records(5, 10), _render, limit=2)
    assert len(page) == 2 and after == Position(0, "k1")
    page, after = take(_records(2, 10), _render, limit=2)
    assert len(page) == 2 and after is None  # nothing after the second: the last page


def test_a_page_stops_before_the_item_that_would_pass_its_bytes() -> None:
    page, after = take(_records(10, 1000), _render, limit=100, budget=3500)
    assert len(page) == 3 and after == Position(0, "k2")


def test_a_page_holds_one_item_whatever_its_size_so_paging_moves_on() -> None:
    page, after = take(_records(3, 5000), _render, limit=100, budget=100)
    assert len(page) == 1 and after == Position(0, "k0")


def test_with_an_envelope_the_first_page_may_hold_none_and_go_on_from_its_start() -> None:
    start = Position()
    page, after = take(_records(3, 5000), _render, limit=100, budget=0, start=start)
    assert page == [] and after == start


def test_the_stores_stop_marker_ends_the_page_where_it_says() -> None:
    def records() -> Any:
        yield Position(0, "a"), "x"
        yield Position(0, "z"), None

    page, after = take(records(), _render, limit=100)
    assert len(page) == 1 and after == Position(0, "z")


def test_a_cursor_names_its_route_and_nothing_else_is_taken() -> None:
    pos = Position(1, "STEP#000003#B", 7)
    assert decode_cursor("steps", encode_cursor("steps", pos)) == pos
    for route, cursor in (
        ("history", encode_cursor("steps", pos)),
        ("steps", "not-base64!"),
        ("steps", "e30"),  # {}
        ("steps", encode_cursor("steps", Position(99, None))),
    ):
        with pytest.raises(BadInputError, match="cursor"):
            decode_cursor(route, cursor)


def test_page_parameters_are_checked() -> None:
    assert page_query({}, "signals") == (100, Position())
    assert page_query({"limit": "1000"}, "signals")[0] == 1000
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"colour": "red"}):
        with pytest.raises(BadInputError):
            page_query(bad, "signals")


class _App:
    def __init__(self, body: str) -> None:
        self.body = body

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": self.body}


def _event() -> dict[str, Any]:
    return {"rawPath": "/x", "requestContext": {"http": {"method": "GET"}}}


def test_the_edge_refuses_an_answer_above_lambdas_limit_with_a_clear_error() -> None:
    big = edge.serve(_App("x" * MAX_RESPONSE_BYTES), _event(), None)  # type: ignore[arg-type]
    assert big["statusCode"] == 500
    error = json.loads(big["body"])["error"]
    assert error["code"] == "response_too_large" and f"{MAX_RESPONSE_BYTES:,}" in error["message"]
    assert big["headers"]["Content-Type"] == "application/json"
    assert big["headers"]["X-Content-Type-Options"] == "nosniff"
    fine = edge.serve(_App("x" * 1000), _event(), None)  # type: ignore[arg-type]
    assert fine["statusCode"] == 200 and fine["body"] == "x" * 1000
