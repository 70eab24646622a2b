"""Finding 7 of issue #16, the part the API owns: one list call's cost is
bounded (GET /workflows?status=X&limit=200 used to read up to 40 Queries and 20
BatchGetItems); the bound is documented in docs/security.md."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from orchestrator import resources as r
from orchestrator.local import LocalStack
from orchestrator.model import Status
from orchestrator.store.sync import MAX_LIST_EXAMINED, MAX_LIST_LIMIT, list_rounds


def worst_case(limit: int) -> tuple[int, int]:
    """(Queries, BatchGetItems) one list call may cost at most."""
    rounds = list_rounds(limit)
    return rounds * r.LIST_SHARDS, rounds * math.ceil(limit / 100)


def test_the_documented_worst_case() -> None:
    assert worst_case(MAX_LIST_LIMIT) == (8, 4)  # was (40, 20)
    assert worst_case(50) == (32, 8)
    assert worst_case(1) == (40, 10)
    for limit in range(1, MAX_LIST_LIMIT + 1):
        assert list_rounds(limit) * limit <= max(limit, MAX_LIST_EXAMINED)


def test_a_filtered_list_stops_at_the_bound(sec_stack: LocalStack) -> None:
    for i in range(12):
        sec_stack.service.start("greet", {}, f"bound-{i}")
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    events = sec_stack.ddb.meta.events
    events.register("before-call.dynamodb", count)
    try:
        page = sec_stack.store.list_runs(status=Status.CANCELLED, limit=1)
    finally:
        events.unregister("before-call.dynamodb", count)
    queries, batches = worst_case(1)
    assert calls["Query"] <= queries and calls["BatchGetItem"] <= batches
    assert page.cursor is not None  # short page, and a way to go on
