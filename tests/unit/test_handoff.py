"""The hand-off policy for messages of names a worker does not serve (pure)."""

from __future__ import annotations

from orchestrator.resources import MAX_RECEIVE_COUNT
from worker._handoff import (
    HANDOFF_VISIBILITY,
    UNSERVED_MAX_RECEIVES,
    Handoff,
    NameCache,
    plan,
)


def test_served_elsewhere_is_handed_back_at_once_then_resent_before_the_redrive() -> None:
    assert plan(1, True) == Handoff("visible", 0)
    assert plan(2, True) == Handoff("visible", 0)
    assert all(plan(n, True).seconds <= 2 for n in range(1, 50))
    assert plan(len(HANDOFF_VISIBILITY) + 1, True).action == "resend"
    assert len(HANDOFF_VISIBILITY) + 1 < MAX_RECEIVE_COUNT


def test_served_by_nobody_backs_off_then_drops_before_the_redrive() -> None:
    seconds = [plan(n, False).seconds for n in range(1, UNSERVED_MAX_RECEIVES)]
    assert seconds == sorted(seconds) and seconds[-1] <= 60
    assert plan(UNSERVED_MAX_RECEIVES, False).action == "drop"
    assert UNSERVED_MAX_RECEIVES < MAX_RECEIVE_COUNT


def test_name_cache_keeps_the_most_recent() -> None:
    cache = NameCache(size=2)
    cache.put("a", "x")
    cache.put("b", "y")
    assert cache.get("a") == "x"
    cache.put("c", "z")  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == "x" and cache.get("c") == "z"
