"""The dashboard in a real headless browser: Debian's chromium driven by
Playwright, against the embedded stack with a worker running.

Skipped only when /usr/bin/chromium is absent (`apt-get install -y chromium`).
Screenshots of each page go to tests/out/dashboard/; with
ORCHESTRATOR_DOCS_SCREENSHOTS=1 the list and a run page are also written to
docs/dashboard.png and docs/dashboard-run.png.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.all import WORKFLOWS as EXAMPLES
from orchestrator.client import Client
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import ROOT, wait_status
from tests.workflows import ALL

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the dashboard test needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install -y chromium)",
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUT = ROOT / "tests" / "out" / "dashboard"
DOCS = ROOT / "docs"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def worker(stack: LocalStack) -> Iterator[BackgroundWorker]:
    with BackgroundWorker([*ALL, *EXAMPLES], stack.settings, clock=stack.clock) as w:
        yield w


def shot(page: Any, name: str, docs_name: str | None = None) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    if docs_name and os.environ.get("ORCHESTRATOR_DOCS_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / docs_name), full_page=True)


def row_ids(page: Any) -> list[str]:
    return list(page.locator("table.runs tbody tr").evaluate_all("rs => rs.map(r => r.dataset.id)"))


def test_runs_list_filters_and_pages(stack: LocalStack, worker: Any, page: Any) -> None:
    from playwright.sync_api import expect

    client = Client(stack.api_url)
    done = [client.start("greet", {"name": n})["id"] for n in ("Ada", "Grace", "Edsger")]
    failed = client.start("failing", {})["id"]
    sleeping = client.start("reminder", {"email": "ada@example.com", "delay_seconds": 3600})["id"]
    waiting = client.start("approval", {"user": "ada"})["id"]
    cancelled = client.start("sleeper", {"seconds": 3600})["id"]
    for run_id in done:
        wait_status(stack, run_id, "completed")
    wait_status(stack, failed, "failed")
    wait_status(stack, sleeping, "sleeping")
    wait_status(stack, waiting, "waiting")
    wait_status(stack, cancelled, "sleeping")
    client.cancel(cancelled)
    newest_first = [cancelled, waiting, sleeping, failed, *reversed(done)]

    page.goto(stack.api_url + "/")
    expect(page.locator("table.runs tbody tr")).to_have_count(7)
    assert row_ids(page) == newest_first
    row = page.locator(f'tr[data-id="{failed}"]')
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("StepFailedError")
    expect(page.locator(f'tr[data-id="{waiting}"]')).to_contain_text(
        "waiting for signal “approved”"
    )
    expect(page.locator(f'tr[data-id="{sleeping}"]')).to_contain_text("wakes in")
    expect(page.locator("#live")).to_contain_text("live")
    shot(page, "list", "dashboard.png")

    # Filter by status, then by name: the table shows only matching runs.
    page.select_option("#status", "failed")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    assert row_ids(page) == [failed]
    assert "status=failed" in page.url
    page.select_option("#status", "")
    page.fill("#name", "greet")
    page.press("#name", "Enter")
    expect(page.locator("table.runs tbody tr")).to_have_count(3)
    assert row_ids(page) == list(reversed(done))
    shot(page, "list-filtered")

    # Page through with Older / Newer, three runs a page.
    page.goto(stack.api_url + "/#/?limit=3")
    expect(page.locator("table.runs tbody tr")).to_have_count(3)
    assert row_ids(page) == newest_first[:3]
    expect(page.locator("#newer")).to_be_disabled()
    page.click("#older")
    expect(page.locator(".pager .info")).to_contain_text("page 2")
    assert row_ids(page) == newest_first[3:6]
    page.click("#older")
    expect(page.locator(".pager .info")).to_contain_text("page 3")
    assert row_ids(page) == newest_first[6:]
    expect(page.locator("#older")).to_be_disabled()
    page.click("#newer")
    expect(page.locator(".pager .info")).to_contain_text("page 2")
    assert row_ids(page) == newest_first[3:6]
    page.click("#newest")
    expect(page.locator(".pager .info")).to_contain_text("page 1")

    # A new run shows up without a reload (the list polls).
    page.goto(stack.api_url + "/")
    expect(page.locator("table.runs tbody tr")).to_have_count(7)
    fresh = client.start("greet", {"name": "Barbara"})["id"]
    expect(page.locator(f'tr[data-id="{fresh}"]')).to_contain_text("completed")

    # Clicking a row opens the run.
    page.click(f'tr[data-id="{failed}"] td.id a')
    expect(page.locator("#run-status")).to_have_text("failed")
    assert page.url.endswith(f"#/runs/{failed}")


def test_run_page_live_signal_cancel_and_error(stack: LocalStack, worker: Any, page: Any) -> None:
    from playwright.sync_api import expect

    client = Client(stack.api_url)
    approval = client.start("approval", {"user": "ada", "timeout_seconds": 600})["id"]
    wait_status(stack, approval, "waiting")

    # A run waiting for a signal: the timeline shows the wait, the form is prefilled.
    page.goto(f"{stack.api_url}/#/runs/{approval}")
    expect(page.locator("#run-status")).to_have_text("waiting")
    expect(page.locator("#run-name")).to_have_text("approval")
    expect(page.locator("#run-id")).to_have_text(approval)
    expect(page.locator("#input")).to_contain_text('"user": "ada"')
    wait = page.locator('#timeline li[data-kind="wait"]')
    expect(wait).to_contain_text("waiting for signal “approved”")
    expect(wait).to_contain_text("deadline")
    expect(page.locator("#signal-name")).to_have_value("approved")
    shot(page, "run-waiting")

    # Bad JSON is refused in the page, with one clear message.
    page.fill("#signal-payload", "{not json")
    page.click("#signal-send")
    expect(page.locator("#signal .banner.error")).to_contain_text("not valid JSON")

    # Send the signal: the page follows the run to completion by itself.
    page.fill("#signal-payload", '{"approved": true}')
    page.click("#signal-send")
    expect(page.locator("#signal .banner.ok")).to_contain_text("woke the run")
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator("#outcome")).to_contain_text('"done"')
    expect(wait).to_contain_text("received")
    expect(wait).to_contain_text('{"approved":true}')
    steps = page.locator('#timeline li[data-kind="step"]')
    expect(steps).to_have_count(2)
    expect(steps.nth(1)).to_contain_text("provision")
    expect(page.locator("#live")).to_contain_text("not refreshing")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#signal-send")).to_be_hidden()
    expect(page.locator("#signal")).to_contain_text("takes no more signals")
    shot(page, "run-completed", "dashboard-run.png")

    # A sleeping run: the timeline shows the wake time; Cancel (after the confirm) cancels.
    reminder = client.start("reminder", {"email": "ada@example.com", "delay_seconds": 3600})["id"]
    wait_status(stack, reminder, "sleeping")
    page.goto(f"{stack.api_url}/#/runs/{reminder}")
    expect(page.locator("#run-status")).to_have_text("sleeping")
    sleep = page.locator('#timeline li[data-kind="sleep"]')
    expect(sleep).to_contain_text("sleep until")
    expect(sleep).to_contain_text(re.compile(r"in (59m|1h)"))
    shot(page, "run-sleeping")
    page.once("dialog", lambda d: d.accept())
    page.click("#cancel")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator(".banner.ok").first).to_contain_text("cancelled")
    wait_status(stack, reminder, "cancelled")
    shot(page, "run-cancelled")

    # A failed run: the error and its traceback.
    failed = client.start("failing", {})["id"]
    wait_status(stack, failed, "failed")
    page.goto(f"{stack.api_url}/#/runs/{failed}")
    expect(page.locator("#run-status")).to_have_text("failed")
    outcome = page.locator("#outcome")
    expect(outcome).to_contain_text("StepFailedError: step 'boom' failed: ValueError: boom")
    expect(outcome.locator("pre.trace")).to_be_visible()
    expect(outcome.locator("pre.trace")).to_contain_text("Traceback (most recent call last)")
    boom = page.locator('#timeline li[data-kind="step"]').nth(1)
    expect(boom).to_contain_text("ValueError: boom")
    shot(page, "run-failed")

    # A retried step: each attempt with its time and error.
    order = client.start("order", {"order_id": f"o-{failed}", "amount": 42})["id"]
    wait_status(stack, order, "completed")
    page.goto(f"{stack.api_url}/#/runs/{order}")
    charge = page.locator('#timeline li[data-kind="step"]').nth(1)
    expect(charge).to_contain_text("charge")
    rows = charge.locator("table.attempts tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("ConnectionError: payment gateway timed out")
    expect(rows.nth(1)).to_contain_text("ok")
    shot(page, "run-retried")

    # An unknown id: one clear message, no crash.
    page.goto(f"{stack.api_url}/#/runs/no-such-run")
    expect(page.locator(".banner.error")).to_contain_text("no-such-run")


def test_unserved_detail_and_a_cancelled_wait(stack: LocalStack, worker: Any, page: Any) -> None:
    """Issue #17, items 3, 4 and 5: an unserved run says so in the list; a
    cancelled run's wait is not shown in progress; the inbox shows a buffered
    signal; a multi-line error keeps its lines."""
    from playwright.sync_api import expect

    client = Client(stack.api_url)
    unserved = client.start("nobody-serves-this", {})["id"]
    approval = client.start("approval", {"user": "ada"})["id"]
    wait_status(stack, approval, "waiting")
    client.signal(approval, "aproved", {"ok": True})  # misspelled: buffered, shown in the inbox
    client.cancel(approval)
    bad = client.start("greet", {"nom": "Ada"})["id"]  # fails the input model: pydantic's lines
    wait_status(stack, bad, "failed")

    page.goto(stack.api_url + "/")
    row = page.locator(f'tr[data-id="{unserved}"]')
    expect(row).to_contain_text("no live worker serves “nobody-serves-this”")

    page.goto(f"{stack.api_url}/#/runs/{approval}")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    wait = page.locator('#timeline li[data-kind="wait"]')
    expect(wait).to_contain_text("never came")
    expect(wait).not_to_contain_text("waiting for signal")
    expect(page.locator("#inbox")).to_contain_text("aproved")
    with page.expect_download() as download:  # the run's history as JSON
        page.click("#export")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["workflow"]["id"] == approval and exported["signals"][0]["name"] == "aproved"

    page.goto(f"{stack.api_url}/#/runs/{bad}")
    line = page.locator("#outcome .error-line")
    expect(line).to_contain_text("validation error")
    assert line.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"


def test_served_under_a_stage_prefix(stack: LocalStack, page: Any) -> None:
    """Relative URLs: the page works under a path prefix (here the API's /api,
    as under an API Gateway stage), with or without the trailing slash."""
    from playwright.sync_api import expect

    run_id = Client(stack.api_url).start("greet", {"name": "Ada"})["id"]
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    for url in (stack.api_url + "/api/", stack.api_url + "/api"):
        requests.clear()
        page.goto(url)
        expect(page.locator(f'tr[data-id="{run_id}"]')).to_be_visible()
        assert page.url.startswith(stack.api_url + "/api/")
        assert stack.api_url + "/api/dashboard/app.js" in requests
        assert stack.api_url + "/api/dashboard/style.css" in requests
        assert any(u.startswith(stack.api_url + "/api/workflows?") for u in requests)
        page.click(f'tr[data-id="{run_id}"] td.id a')
        expect(page.locator("#run-status")).to_have_text(re.compile("pending|running|completed"))
        steps = f"{stack.api_url}/api/workflows/{run_id}/steps?"
        assert any(u.startswith(steps) for u in requests)


def test_run_page_follows_every_page_of_steps_signals_and_history(
    stack: LocalStack, page: Any
) -> None:
    """A run whose steps and inbox take several pages (each page is cut at 1 MB):
    the timeline and the inbox show them all, in order, and the export holds
    every page. Its items are written straight into the table."""
    from dataclasses import replace

    from playwright.sync_api import expect

    from orchestrator.model import Signal, StepKind, StepRecord
    from orchestrator.store.codec import signal_item, step_item

    run, _ = stack.service.start("waiter", {"signal": "go"}, "paged")
    now = stack.clock.now_ms()
    items = []
    for i in range(14):  # 14 x 150 KB: two pages of steps
        rec = StepRecord(
            str(i), f"s{i}", StepKind.STEP, 1, now + i, result=json.dumps("x" * 150_000)
        )
        items.append(step_item(run.id, replace(rec, resolved=True, started_at=now + i)))
    for seq in range(1, 23):  # 22 x 60 KB: two pages of signals
        items.append(signal_item(run.id, Signal("go", seq, json.dumps("y" * 60_000), now)))
    for item in items:
        stack.ddb.put_item(TableName=stack.settings.table, Item=item)
    first = Client(stack.api_url)._call("GET", f"/workflows/{run.id}/steps?limit=1000")
    assert first["next"] and len(first["steps"]) < 14  # more than one page indeed

    page.goto(f"{stack.api_url}/#/runs/{run.id}")
    expect(page.locator('#timeline li[data-kind="step"]')).to_have_count(14)
    expect(page.locator('#timeline li[data-kind="step"]').last).to_contain_text("s13")
    expect(page.locator("#inbox")).to_contain_text("22 buffered")
    expect(page.locator("#inbox tbody tr")).to_have_count(22)
    with page.expect_download() as download:
        page.click("#export")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["workflow"]["id"] == run.id
    assert [s["name"] for s in exported["steps"]] == [f"s{i}" for i in range(14)]
    assert [s["seq"] for s in exported["signals"]] == list(range(1, 23))


def test_opened_through_the_credentials_proxy(stack: LocalStack, page: Any) -> None:
    """`orchestrator dashboard`: the same page, read through the signing proxy."""
    from playwright.sync_api import expect

    from orchestrator.dashboard.proxy import DashboardProxy

    run_id = Client(stack.api_url).start("greet", {"name": "Ada"})["id"]
    proxy = DashboardProxy(stack.api_url, auth="iam").start()
    try:
        page.goto(proxy.open_url)
        expect(page.locator(f'tr[data-id="{run_id}"]')).to_be_visible()
        page.click(f'tr[data-id="{run_id}"] td.id a')
        expect(page.locator("#run-id")).to_have_text(run_id)
    finally:
        proxy.stop()


def test_run_page_nests_branches_and_collapses_a_big_batch(
    stack: LocalStack, worker: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    client = Client(stack.api_url)
    run = client.start(
        "batch-rules",
        {"n": 12, "fail": [5], "max_concurrency": None, "tolerated_failure_count": 5},
    )["id"]
    wait_status(stack, run, "completed", "sleeping")
    page.goto(f"{stack.api_url}/#/runs/{run}")
    batch = page.locator('#timeline li[data-kind="parallel"]')
    expect(batch).to_contain_text("12 branches: 1 failed, 11 succeeded")
    failed = page.locator('#timeline li[data-id="0.5.0"]')
    expect(failed).to_be_visible()  # the failed branch first, outside the collapsed part
    expect(failed).to_contain_text("ValueError: b5 failed")
    expect(failed).to_have_attribute("data-depth", "2")
    collapsed = page.locator("#timeline li.collapsed summary")
    expect(collapsed).to_contain_text("11 more operations of parallel rules")
    expect(page.locator('#timeline li[data-id="0.3.0"]')).to_be_hidden()
    collapsed.click()
    expect(page.locator('#timeline li[data-id="0.3.0"]')).to_be_visible()
    shot(page, "run-batch")


def test_parent_and_child_runs_link_both_ways(stack: LocalStack, worker: Any, page: Any) -> None:
    from playwright.sync_api import expect

    client = Client(stack.api_url)
    run = client.start("parent", {"children": [{"value": "a"}], "after": 3600})["id"]
    wait_status(stack, run, "sleeping", timeout=30)
    child = client.list(parent_id=run)["workflows"][0]["id"]
    page.goto(f"{stack.api_url}/#/runs/{run}")
    invoke = page.locator('#timeline li[data-kind="invoke"]')
    expect(invoke).to_contain_text("completed")
    invoke.locator("a.child-link").click()
    expect(page.locator("#run-id")).to_have_text(child)
    page.locator("#parent-link").click()
    expect(page.locator("#run-id")).to_have_text(run)


def test_schedules_page_lists_schedules_and_links_their_runs(
    stack: LocalStack, worker: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    client = Client(stack.api_url)
    client.create_schedule(
        "nightly", "count", {"steps": 1}, expression="cron(0 2 * * ? *)", timezone="Europe/Paris"
    )
    started = client.trigger_schedule("nightly")
    wait_status(stack, started["run_id"], "completed")
    page.goto(f"{stack.api_url}/#/schedules")
    row = page.locator("table.schedules tbody tr[data-name='nightly']")
    expect(row).to_contain_text("cron(0 2 * * ? *) Europe/Paris")
    expect(row).to_contain_text("active")
    row.locator("a").first.click()
    expect(page.locator("#run-name")).to_have_text("count")
    assert started["run_id"] in page.url
    shot(page, "schedules")


def test_jobs_page_shows_progress_and_cancels_a_running_job(
    stack: LocalStack, page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import expect

    from orchestrator.api import bulk as bulk_module
    from orchestrator.api import jobs as jobs_module

    client = Client(stack.api_url)
    for i in range(3):
        client.start("nobody-serves", {"n": i})
    done = client.bulk("cancel", name="nobody-serves")  # ends within its request
    # One that does not: a page of one run per request, and no sweep in between
    # that could end it before the page shows it.
    monkeypatch.setattr(jobs_module, "REQUEST_BUDGET_S", 0.0)
    monkeypatch.setattr(bulk_module, "LIST_PAGE", 1)
    monkeypatch.setattr(jobs_module.JobService, "advance_due", lambda self, *a, **k: [])
    running = client.bulk("terminate", name="nobody-serves", wait=None)
    assert running["status"] == "running"
    page.goto(f"{stack.api_url}/#/jobs")
    ended = page.locator(f"table.jobs tbody tr[data-id='{done['job_id']}']")
    expect(ended).to_contain_text("bulk cancel (dry run) name=nobody-serves")
    expect(ended).to_contain_text("3 match")
    row = page.locator(f"table.jobs tbody tr[data-id='{running['job_id']}']")
    expect(row).to_contain_text("1 runs examined")
    shot(page, "jobs")
    row.locator("button.cancel-job").click()
    expect(row).to_contain_text("cancelled by request")
    assert client.job(running["job_id"])["status"] == "cancelled"


def test_workers_page_shows_the_registry_live_stale_and_stopped(
    stack: LocalStack, worker: Any, page: Any
) -> None:
    """A live worker with what it serves; a silent one and one that said goodbye
    only when asked for, each with its heartbeat age by the API's clock."""
    from playwright.sync_api import expect

    from orchestrator.store.registry import WorkerInfo, put_worker

    now = stack.clock.now_ms()
    for wid, seen, stopped in (("silent-1", now - 300_000, False), ("gone-1", now - 7_200, True)):
        info = WorkerInfo(
            id=wid,
            host="rack-7",
            pid=42,
            names=["reports"],
            concurrency=4,
            busy=1,
            started_at=seen - 60_000,
            last_seen=seen,
            stopped=stopped,
            task_queues=["gpu"],
        )
        stack.store.ddb.put_item(**put_worker(stack.settings.table, info))
    me = worker.worker.id

    page.goto(f"{stack.api_url}/#/workers")
    rows = page.locator("table.workers tbody tr")
    expect(rows).to_have_count(1)
    row = page.locator(f'tr[data-id="{me}"]')
    expect(row).to_have_attribute("data-state", "live")
    for name in ("greet", "approval", "failing"):
        expect(row.locator("a", has_text=name).first).to_be_visible()
    expect(row).to_contain_text("/ 10")  # the default concurrency
    expect(row).to_contain_text("default")

    page.check("#all")
    expect(rows).to_have_count(3)
    assert "all=1" in page.url
    silent = page.locator('tr[data-id="silent-1"]')
    expect(silent).to_have_attribute("data-state", "stale")
    expect(silent).to_contain_text("stale")
    expect(silent).to_contain_text("5 min ago")
    expect(silent).to_contain_text("rack-7 pid 42")
    expect(silent).to_contain_text("gpu")
    expect(silent).to_contain_text("1 / 4")
    expect(page.locator('tr[data-id="gone-1"]')).to_contain_text("stopped")
    shot(page, "workers")

    silent.locator("a", has_text="reports").click()  # a name links to its runs
    expect(page.locator("#name")).to_have_value("reports")


def test_runs_list_filters_by_build_id(stack: LocalStack, page: Any) -> None:
    from playwright.sync_api import expect

    from examples.greet import greet

    client = Client(stack.api_url)
    ids = {}
    for build in ("2026.11.1", "2026.12.1"):
        with BackgroundWorker([greet], stack.settings, clock=stack.clock, build_id=build):
            ids[build] = client.start("greet", {"name": build})["id"]
            wait_status(stack, ids[build], "completed")

    page.goto(stack.api_url + "/")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    page.fill("#build", "2026.11.1")
    page.press("#build", "Enter")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    assert row_ids(page) == [ids["2026.11.1"]]
    assert "build_id=2026.11.1" in page.url
    page.reload()  # the filter lives in the hash
    expect(page.locator("#build")).to_have_value("2026.11.1")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)


def _size(n: int) -> str:
    """A size as the page writes it (values.js, `size`)."""
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / (1024 * 1024):.1f} MB"


def test_values_stored_in_s3_show_their_size_a_preview_and_a_download(
    stack: LocalStack, page: Any
) -> None:
    """Issue #19: a run's output and a step's result above the API's inline limit
    come as links. The page shows each one's size, the start of the value (read
    from the API: the page's CSP allows no fetch from S3) and a download link the
    browser can open; an invoke shows its child's offloaded output as a reference
    that leads to the child run."""
    import hashlib

    from playwright.sync_api import expect

    from orchestrator.payloads import MAX_INLINE_READ_BYTES, PREVIEW_BYTES, parse_pointer
    from tests.workflows_large import LARGE

    client = Client(stack.api_url)
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        big = client.start("large.value", {"size": 2 * MAX_INLINE_READ_BYTES, "seed": "dash"})["id"]
        parent = client.start("large.parent", {"size": 300 * 1024})["id"]
        for run_id in (big, parent):
            assert wait_status(stack, run_id, "completed", "failed", timeout=60).error is None
    # The API answers with links, not values: what the page has to follow.
    link = client.get(big, follow_links=False)["output_link"]
    assert link["bytes"] > MAX_INLINE_READ_BYTES and link["url"]
    make = next(s for s in client.steps(big, follow_links=False) if s["name"] == "make")
    assert make["result"] is None and make["result_link"]["bytes"] > MAX_INLINE_READ_BYTES
    stored = stack.values.get(stack.store.get(big).output) or ""

    page.clock.install()  # to age the links past their 15 minutes below
    page.goto(f"{stack.api_url}/#/runs/{big}")
    expect(page.locator("#run-status")).to_have_text("completed")
    output = page.locator("#outcome .value-link")
    expect(output).to_have_attribute("data-sha256", link["sha256"])
    expect(output.locator(".value-meta")).to_contain_text(
        f"{_size(link['bytes'])} of JSON, stored in S3 (sha256 {link['sha256'][:12]}…)"
    )
    expect(output.locator(".preview-note")).to_have_text(
        f"the first {_size(PREVIEW_BYTES)} of {_size(link['bytes'])}"
    )
    preview = output.locator("pre.preview")
    expect(preview).to_contain_text('"seed":"dash"')
    assert preview.text_content() == stored[:PREVIEW_BYTES] + "…"  # ASCII: bytes are characters
    step = page.locator('#timeline li[data-kind="step"]', has_text="make").locator(".value-link")
    expect(step).to_have_attribute("data-sha256", make["result_link"]["sha256"])
    expect(step.locator("pre.preview")).to_contain_text('{"seed":"dash","rows":["0:')
    shot(page, "run-large-values")

    # The download link opens in a new tab; the browser reaches the value store
    # (S3, here the local moto server) and gets the value's bytes.
    def download(where: Any) -> tuple[int, bytes]:
        """(status, body) of what the new tab got."""
        stored_value = page.context.expect_event("response", lambda r: "/values/sha256/" in r.url)
        with stored_value as got, page.expect_popup() as tab:
            where.locator("a.value-download").click()
        answer = got.value.status, got.value.body()
        tab.value.close()
        return answer

    status, body = download(output)
    assert status == 200 and hashlib.sha256(body).hexdigest() == link["sha256"]
    # Past its 15 minutes a link is renewed by the click: a new GET of the run first.
    page.clock.fast_forward("16:00")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    status, body = download(output)
    assert status == 200 and hashlib.sha256(body).hexdigest() == link["sha256"]
    assert f"{stack.api_url}/workflows/{big}" in asked

    # The runs list reads no values: it gives the size.
    page.goto(stack.api_url + "/")
    expect(page.locator(f'tr[data-id="{big}"]')).to_contain_text(
        f"→ {_size(link['bytes'])} value stored in S3"
    )

    # An invoke whose child's output is in S3: a reference, linked to the child run,
    # whose own page shows the value (inline: it is under the API's 1 MB).
    child = client.list(parent_id=parent)["workflows"][0]["id"]
    digest, size = parse_pointer(stack.store.get(child).output or "")
    page.goto(f"{stack.api_url}/#/runs/{parent}")
    ref = page.locator('#timeline li[data-kind="invoke"] a.child-output')
    expect(ref).to_have_attribute("data-sha256", digest)
    expect(ref).to_have_text(
        f"{_size(size)} of JSON stored in S3 (sha256 {digest[:12]}…), on the child run"
    )
    ref.click()
    expect(page.locator("#run-id")).to_have_text(child)
    expect(page.locator("#outcome pre.json")).to_contain_text('"seed": "kid"')
