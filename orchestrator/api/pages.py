"""Every answer of the API fits Lambda's response limit, by construction.

A Lambda function answers API Gateway with one JSON document of at most 6 MB
(`MAX_RESPONSE_BYTES`), in which the body is a JSON string: every `"` and `\\`
of the body is escaped once more. `sent_size` counts a value as it travels
that way (the API's JSON, ASCII, compact, then escaped). The collections that
grow with a run (its records, its inbox, its history) and the runs of a list
are answered a page at a time, and a page stops before the item that would take
its items past `PAGE_BYTES`, whatever `limit` asked for (a page holds at least
one item, so paging always moves on). A single item is bounded by what it can
hold: a value is inline up to `MAX_INLINE_READ_BYTES` as sent and a link above
(`models._read`), and the rest of an item is a DynamoDB item's 400 KB. So a
page is at most max(`PAGE_BYTES`, one item) plus its envelope: under 6 MB.
`edge.serve` checks every answer against the limit all the same and answers
500 rather than let Lambda fail the invocation.

Cursors are opaque to clients: base64url of a small JSON object naming the
route it belongs to and a store position (`store.pages.Position`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .. import safejson
from ..errors import BadInputError
from ..model import DEFAULT_PAGE_ITEMS, MAX_PAGE_ITEMS
from ..store.pages import Position

T = TypeVar("T")

MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # Lambda's synchronous response payload
PAGE_BYTES = 1024 * 1024  # the items of one page, as sent (`sent_size`)
DEFAULT_PAGE = DEFAULT_PAGE_ITEMS
MAX_PAGE = MAX_PAGE_ITEMS
MAX_CURSOR_KEY = 1100  # a sort key is at most 1 KB


def sent_size(value: Any) -> int:
    """Bytes `value` takes in the Lambda response: the API's JSON (compact,
    ASCII: `\\uXXXX` for the rest), in a JSON string (`"` and `\\` escaped)."""
    text = json.dumps(value, separators=(",", ":"))
    return len(text) + text.count('"') + text.count("\\")


def encode_cursor(route: str, pos: Position) -> str:
    data = {"r": route, "s": pos.section, "k": pos.key, "n": pos.taken}
    text = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(route: str, cursor: str) -> Position:
    """The position a cursor of `route` names; BadInputError for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        d = safejson.loads(base64.urlsafe_b64decode(padded.encode()), what="cursor")
        section, key, taken = d["s"], d["k"], d["n"]
        if (
            d["r"] != route
            or type(section) is not int
            or not 0 <= section < 10
            or (key is not None and (not isinstance(key, str) or len(key) > MAX_CURSOR_KEY))
            or (taken is not None and (type(taken) is not int or not 0 <= taken < 1_000_000))
        ):
            raise ValueError
        return Position(section, key, taken)
    except (BadInputError, ValueError, KeyError, TypeError, binascii.Error) as e:
        raise BadInputError(f"cursor is not one this API returned for {route}") from e


def page_query(
    query: dict[str, str], route: str, *, allowed: tuple[str, ...] = ()
) -> tuple[int, Position]:
    """(limit, start) of a paged GET: `limit` 1 to MAX_PAGE (DEFAULT_PAGE), and
    `cursor` as returned in the previous page's `next`. Other parameters than
    these and `allowed` are refused."""
    unknown = set(query) - {"limit", "cursor", *allowed}
    if unknown:
        raise BadInputError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    limit = safejson.int_param(
        query.get("limit", str(DEFAULT_PAGE)), what="limit", lo=1, hi=MAX_PAGE
    )
    cursor = query.get("cursor")
    return limit, decode_cursor(route, cursor) if cursor else Position()


def take(
    records: Iterator[tuple[Position, T | None]],
    render: Callable[[T], dict[str, Any]],
    *,
    limit: int,
    budget: int = PAGE_BYTES,
    start: Position | None = None,
) -> tuple[list[tuple[T, dict[str, Any]]], Position | None]:
    """One page of `records` (the store's lazy read, each record with the
    position after it): at most `limit` records, and no more than `budget` bytes
    of their views as sent, but at least one. Returns (record and view pairs,
    the position to go on from, None at the end). `start`: where the page began
    (the position to go on from when not even one record fits `budget`, which a
    caller with an envelope of its own may pass less than a view)."""
    out: list[tuple[T, dict[str, Any]]] = []
    used = 0
    last = start
    for after, rec in records:
        if rec is None:  # the store's reads for this page are spent
            return out, after
        if len(out) == limit:
            return out, last
        view = render(rec)
        size = sent_size(view)
        if used + size > budget and (out or start is not None):
            return out, last
        out.append((rec, view))
        used += size
        last = after
    return out, None


__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "MAX_RESPONSE_BYTES",
    "PAGE_BYTES",
    "decode_cursor",
    "encode_cursor",
    "page_query",
    "sent_size",
    "take",
]
