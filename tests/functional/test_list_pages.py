"""Listing runs by name, a page at a time, across the four index shards: every
run of the name comes exactly once, newest first, whatever the page size.

Each shard's Query examines at most a page of index items and the name filter
keeps fewer; a shard that stopped early was examined only down to where it
stopped. A page once went below that point because another shard, all of whose
examined items were filtered out, had gone further: the first shard's runs in
between were never listed (a bulk job counted 8 runs of 10).
"""

from __future__ import annotations

import random
from typing import Any


def test_every_run_of_a_name_comes_once_newest_first_whatever_the_page(stack: Any) -> None:
    names = ["often"] * 24 + ["rare"] * 6
    random.Random(7).shuffle(names)
    made: dict[str, list[str]] = {"often": [], "rare": []}
    for i, name in enumerate(names):
        run, _ = stack.service.start(name, {"i": i})
        made[name].append(run.id)
    for name in made:
        for limit in (1, 2, 3, 4, 5, 7, 200):
            seen: list[Any] = []
            cursor = None
            for _ in range(200):
                page = stack.service.list(status=None, name=name, limit=limit, cursor=cursor)
                assert len(page.runs) <= limit
                seen += page.runs
                cursor = page.cursor
                if cursor is None:
                    break
            assert sorted(r.id for r in seen) == sorted(made[name]), (name, limit)
            created = [r.created_at for r in seen]
            assert created == sorted(created, reverse=True), (name, limit)
