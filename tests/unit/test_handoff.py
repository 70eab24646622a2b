"""The hand-off policy for messages of names a worker does not serve (pure),
and the name hint a message carries."""

from __future__ import annotations

from orchestrator.clock import SkippingClock
from orchestrator.dispatch import message_body, parse_body, parse_name
from orchestrator.resources import MAX_RECEIVE_COUNT
from orchestrator.store.registry import WorkerInfo, put_worker
from worker._handoff import (
    AT_ONCE_MAX,
    AT_ONCE_MIN,
    HANDOFF_BACKOFF,
    UNSERVED_MAX_RECEIVES,
    Handoff,
    NameCache,
    ServedNames,
    plan,
)


def test_served_elsewhere_is_handed_back_at_once_then_resent_before_the_redrive() -> None:
    assert plan(1, True) == Handoff("visible", 0)
    assert plan(2, True) == Handoff("visible", 0)
    assert all(plan(n, True, 99).seconds <= 2 for n in range(1, 50))
    assert plan(AT_ONCE_MIN + len(HANDOFF_BACKOFF) + 1, True).action == "resend"
    # However many workers the registry shows, the copy is replaced before the redrive.
    assert plan(AT_ONCE_MAX + len(HANDOFF_BACKOFF) + 1, True, 99).action == "resend"
    assert AT_ONCE_MAX + len(HANDOFF_BACKOFF) + 1 < MAX_RECEIVE_COUNT


def test_the_receives_handed_back_at_once_follow_the_registry_within_bounds() -> None:
    at_once = [plan(n, True, 8).seconds for n in range(1, 9)]
    assert at_once == [0] * 8
    assert [plan(n, True, 8).seconds for n in range(9, 12)] == list(HANDOFF_BACKOFF)
    assert plan(AT_ONCE_MIN + 1, True, 0).seconds == HANDOFF_BACKOFF[0]  # never fewer than the min
    assert plan(AT_ONCE_MAX + 1, True, 99).seconds == HANDOFF_BACKOFF[0]  # nor more than the max


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


def test_name_cache_answers_only_for_the_run_s_task_queue() -> None:
    cache = NameCache()
    cache.put("a", "train", "gpu")
    assert cache.get("a", "gpu") == "train"
    assert cache.get("a") is None  # a stray message on default: the claim decides (forward)


def test_a_message_carries_the_name_as_a_hint_and_a_bad_one_is_ignored() -> None:
    body = message_body("run-1", "start", name="count")
    assert parse_body(body) == "run-1" and parse_name(body) == "count"
    assert parse_name(message_body("run-1", "start")) is None
    assert parse_name('{"id": "run-1", "name": "no spaces allowed"}') is None
    assert parse_name('{"id": "run-1", "name": 5}') is None
    assert parse_name("not json") is None


class _Registry:
    def __init__(self, workers: list[WorkerInfo]) -> None:
        self.items = [put_worker("t", w)["Item"] for w in workers]
        self.queries = 0

    async def query(self, **_: object) -> dict[str, object]:
        self.queries += 1
        return {"Items": self.items}


def _w(wid: str, served: list[str], queues: list[str] | None = None) -> WorkerInfo:
    # Seen now (not when the module was imported: a slow suite runs this test
    # minutes later, and an entry that old is no live worker).
    now = SkippingClock().now_ms()
    names = sorted({s.split("@")[0] for s in served})
    return WorkerInfo(
        id=wid, host="h", pid=1, names=names, concurrency=4, busy=0, started_at=now,
        last_seen=now, task_queues=queues or ["default"], served=served,
    )  # fmt: skip


async def test_route_counts_the_workers_on_the_queue_that_do_not_serve_the_name() -> None:
    clock = SkippingClock()
    registry = _Registry(
        [
            _w("me", ["a"]),
            _w("w1", ["b"]),
            _w("w2", ["c"]),
            _w("w3", ["d"]),
            _w("gpu", ["train@gpu"], ["gpu"]),  # another queue: not counted on default
        ]
    )
    names = ServedNames(registry, "t", clock, self_id="me")
    # w1 serves b; w2 and w3 do not, nor does this worker: 3 workers, 3 times that at once.
    assert await names.route("b", "default") == (True, 9)
    assert await names.route("train", "default") == (False, 12)  # served on gpu only
    assert await names.route("train", "gpu") == (True, 3)
