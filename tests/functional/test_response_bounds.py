"""Every answer of the API stays under Lambda's 6 MB response limit, however
large a run's collections grow (issue #25, item 2): 150 signals of 65 KB to one
run made `GET /workflows/{id}/signals` and `/history` answer 9.76 MB.

One run's collections are flooded by writing their items straight into the
table (what years of a run, a stale inbox from before its limit, or the
engine's own signals could leave): its records (large inline results, non-ASCII
text that grows threefold as the API sends it, a batch item of many results, an
offloaded value that is inline-sized as stored and not as sent), its inbox and
its consumed signals. Each route is read page by page over HTTP: every answer is
checked against the limit as Lambda would send it, and the pages together must
return every item exactly once."""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter
from typing import Any

import pytest

from orchestrator.api.pages import MAX_RESPONSE_BYTES, PAGE_BYTES
from orchestrator.local import LocalStack
from orchestrator.model import Signal, StepKind, StepRecord
from orchestrator.payloads import pointer_of
from orchestrator.store.codec import batch_item, signal_item, step_item
from tests.security._http import request

N_STEPS = 60  # ~190 KB each: 11 MB of records
N_SIGNALS = 150  # 65 KB each: 9.8 MB of inbox, as in the issue
N_CONSUMED = 40  # 30 KB each: 1.2 MB more in the history
BATCH_ENTRIES = 50


def lambda_size(body: bytes) -> int:
    """The answer's size inside the Lambda response (the body is a JSON string)."""
    return len(json.dumps({"statusCode": 200, "body": body.decode()}))


def get(stack: LocalStack, path: str) -> tuple[dict[str, Any], int]:
    status, _, body = request(stack.api_url, "GET", path)
    assert status == 200, (path, status, body[:300])
    size = lambda_size(body)
    assert size < MAX_RESPONSE_BYTES, (path, size)
    return json.loads(body), size


def pages(stack: LocalStack, path: str, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        args = {**params, **({"cursor": cursor} if cursor else {})}
        sep = "&" if "?" in path else "?"
        page, _ = get(stack, path + (sep + urllib.parse.urlencode(args) if args else ""))
        out.append(page)
        cursor = page.get("next")
        assert len(out) < 2000, "paging does not move on"
        if not cursor:
            return out


def write(stack: LocalStack, items: list[dict[str, Any]]) -> None:
    table = stack.settings.table
    for i in range(0, len(items), 25):
        request_items = {table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]}
        while request_items:
            resp = stack.ddb.batch_write_item(RequestItems=request_items)
            request_items = resp.get("UnprocessedItems") or {}


@pytest.fixture
def flooded(stack: LocalStack) -> dict[str, Any]:
    run, _ = stack.service.start("waiter", {"signal": "go"}, "flooded")
    now = stack.clock.now_ms()
    steps: list[str] = []
    items: list[dict[str, Any]] = []
    for i in range(N_STEPS):
        # Every fifth result is non-ASCII: 60 KB as stored, three times that as sent.
        value = "é" * 30_000 if i % 5 == 0 else "x" * 190_000
        rec = StepRecord(str(i), f"s{i}", StepKind.STEP, 1, now, result=json.dumps(value))
        items.append(step_item(run.id, replace_resolved(rec)))
        steps.append(rec.op_id)
    # A value offloaded to S3, 0.9 MB as stored (inline-sized) and 2.7 MB as sent.
    data = json.dumps("é" * 450_000, ensure_ascii=False).encode()
    pointer, key = pointer_of(data)
    stack.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=data)
    big = StepRecord(str(N_STEPS), "big", StepKind.STEP, 1, now, result=pointer)
    items.append(step_item(run.id, replace_resolved(big)))
    steps.append(big.op_id)
    # A batch item: fifty results at t0.<k>, expanded into fifty records.
    entries = [
        replace_resolved(StepRecord(f"t0.{k}", f"b{k}", StepKind.STEP, 1, now, result='"r"'))
        for k in range(BATCH_ENTRIES)
    ]
    items.append(batch_item(run.id, epoch=1, now=now, records=entries))
    steps += [e.op_id for e in entries]
    signals: list[tuple[str, int]] = []
    for seq in range(1, N_SIGNALS + 1):
        sig = Signal("go", seq, json.dumps("y" * 65_000), now)
        items.append(signal_item(run.id, sig))
        signals.append(("go", seq))
    consumed: list[tuple[str, int]] = []
    for seq in range(N_SIGNALS + 1, N_SIGNALS + N_CONSUMED + 1):
        sig = Signal("done", seq, json.dumps("z" * 30_000), now)
        item = signal_item(run.id, sig)
        item["consumed_at"] = {"N": str(now)}
        items.append(item)
        consumed.append(("done", seq))
    write(stack, items)
    return {"id": run.id, "steps": steps, "inbox": signals, "consumed": consumed}


def replace_resolved(rec: StepRecord) -> StepRecord:
    from dataclasses import replace

    return replace(rec, resolved=True, started_at=rec.recorded_at)


def exactly_once(found: list[Any], expected: list[Any]) -> None:
    counts = Counter(found)
    assert [k for k, n in counts.items() if n > 1] == [], "returned twice"
    assert sorted(counts) == sorted(expected)


def test_every_page_of_the_steps_is_bounded_and_they_hold_every_record_once(
    stack: LocalStack, flooded: dict[str, Any]
) -> None:
    wid = flooded["id"]
    for params in ({}, {"limit": "1000"}, {"limit": "7"}):
        got = pages(stack, f"/workflows/{wid}/steps", **params)
        assert len(got) > 1
        exactly_once([s["id"] for p in got for s in p["steps"]], flooded["steps"])
    big = next(
        s for p in pages(stack, f"/workflows/{wid}/steps") for s in p["steps"] if s["name"] == "big"
    )
    assert big["result"] is None and big["result_link"]["bytes"] > 900_000  # a link as sent


def test_every_page_of_the_inbox_is_bounded_and_they_hold_every_signal_once(
    stack: LocalStack, flooded: dict[str, Any]
) -> None:
    wid = flooded["id"]
    for params in ({}, {"limit": "1000"}, {"limit": "3"}):
        got = pages(stack, f"/workflows/{wid}/signals", **params)
        assert len(got) > 1
        found = [(s["name"], s["seq"]) for p in got for s in p["signals"]]
        exactly_once(found, flooded["inbox"])  # consumed ones are not in the inbox


def test_every_page_of_the_history_is_bounded_and_they_hold_everything_once(
    stack: LocalStack, flooded: dict[str, Any]
) -> None:
    wid = flooded["id"]
    for params in ({}, {"limit": "1000"}, {"limit": "11"}):
        got = pages(stack, f"/workflows/{wid}/history", **params)
        assert got[0]["workflow"]["id"] == wid and got[0]["format"] == "orchestrator.history/1"
        assert all(p["workflow"] is None for p in got[1:])
        exactly_once([s["id"] for p in got for s in p["steps"]], flooded["steps"])
        found = [(s["name"], s["seq"]) for p in got for s in p["signals"]]
        exactly_once(found, flooded["inbox"] + flooded["consumed"])


def test_a_page_is_cut_by_bytes_whatever_the_limit(
    stack: LocalStack, flooded: dict[str, Any]
) -> None:
    wid = flooded["id"]
    page, size = get(stack, f"/workflows/{wid}/signals?limit=1000")
    assert 1 <= len(page["signals"]) < 1000 and page["next"]
    assert size <= 2 * PAGE_BYTES
    assert page["inbox"]["max_signals"] == 1000


def test_the_other_routes_of_a_flooded_run_are_bounded(
    stack: LocalStack, flooded: dict[str, Any]
) -> None:
    from orchestrator.client import Client

    wid = flooded["id"]
    get(stack, f"/workflows/{wid}")
    listed = pages(stack, "/workflows", limit="200")
    assert [r["id"] for p in listed for r in p["workflows"]] == [wid]
    # The client follows every page and returns the collections whole.
    client = Client(stack.api_url)
    assert len(client.steps(wid, follow_links=False)) == len(flooded["steps"])
    assert len(client.inbox(wid)) == N_SIGNALS
    history = client.history(wid)
    assert len(history["steps"]) == len(flooded["steps"])
    assert len(history["signals"]) == N_SIGNALS + N_CONSUMED
    assert [s["seq"] for s in history["signals"]] == sorted(s["seq"] for s in history["signals"])


def test_a_list_page_of_large_runs_is_cut_by_bytes(stack: LocalStack) -> None:
    """Runs with 128 KB inputs: 200 of them would be 25 MB in one list page."""
    for i in range(30):
        stack.service.start("waiter", {"signal": "go", "pad": "p" * 120_000}, f"big-{i}")
    found = [r["id"] for p in pages(stack, "/workflows", limit="200") for r in p["workflows"]]
    assert sorted(found) == sorted(f"big-{i}" for i in range(30))
    first, _ = get(stack, "/workflows?limit=200")
    assert len(first["workflows"]) < 30 and first["next_cursor"] == first["next"]


def test_a_cursor_from_another_route_or_forged_is_refused(
    stack: LocalStack, flooded: dict[str, Any]
) -> None:
    from orchestrator.api.pages import encode_cursor
    from orchestrator.store.pages import Position

    wid = flooded["id"]
    page, _ = get(stack, f"/workflows/{wid}/signals?limit=1")
    # Well formed, but naming an item outside the route's range: the run item.
    outside = encode_cursor("steps", Position(0, "RUN", 1))
    beyond = encode_cursor("signals", Position(0, "STEP#000001"))
    for path in (
        f"/workflows/{wid}/steps?cursor={outside}",
        f"/workflows/{wid}/signals?cursor={beyond}",
        f"/workflows/{wid}/steps?cursor={page['next']}",
        f"/workflows/{wid}/signals?cursor=bm90LWEtY3Vyc29y",
        f"/workflows/{wid}/history?limit=0",
        f"/workflows/{wid}/signals?limit=1001",
        f"/workflows/{wid}/steps?colour=red",
    ):
        status, _, body = request(stack.api_url, "GET", path)
        assert status == 400, (path, body)


def test_pages_of_a_batched_run_hold_its_items_and_its_last_batch_once(
    stack: LocalStack, exec_log: Any
) -> None:
    """Records in batch items, a single record, and the results the terminal
    write carried on the run item (its last batch): every page size walks them
    all, in the store's order, each once."""
    from orchestrator.local.worker_thread import BackgroundWorker
    from tests.helpers import wait_status
    from tests.workflows import ALL

    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("tiny", {"steps": 30, "mark_after": 10})
        done = wait_status(stack, run.id, "completed", "failed")
    assert done.status.value == "completed" and done.last_batch is not None
    whole = [s.op_id for s in stack.store.steps(run.id)]
    assert len(whole) == 31  # 30 steps and the mark
    for limit in ("1", "4", "1000"):
        got = pages(stack, f"/workflows/{run.id}/steps", limit=limit)
        exactly_once([s["id"] for p in got for s in p["steps"]], whole)
        history = pages(stack, f"/workflows/{run.id}/history", limit=limit)
        exactly_once([s["id"] for p in history for s in p["steps"]], whole)


def test_a_runs_children_come_a_page_at_a_time_in_start_order(stack: LocalStack) -> None:
    """A parent's children (`GET /workflows?parent_id=`) were one answer of
    every child: paged now by `limit` and by bytes (inputs of 120 KB here)."""
    from orchestrator.model import child_run_id

    parent, _ = stack.service.start("waiter", {"signal": "go"}, "parent")
    now = stack.clock.now_ms()
    kids: list[str] = []
    for i in range(15):
        rec = StepRecord(str(i), f"kid{i}", StepKind.INVOKE, 1, now, started_at=now)
        stack.ddb.put_item(TableName=stack.settings.table, Item=step_item(parent.id, rec))
        kid = child_run_id(parent.id, str(i))
        if i != 3:  # one not started yet: left out of the pages, not counted twice
            stack.service.start("waiter", {"signal": "go", "pad": "p" * 120_000}, kid)
            kids.append(kid)
    for params in ({}, {"limit": "2"}, {"limit": "200"}):
        got = pages(stack, "/workflows", parent_id=parent.id, **params)
        assert len(got) > 1
        assert [r["id"] for p in got for r in p["workflows"]] == kids  # start order, once each
