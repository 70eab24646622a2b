"""Jobs (orchestrator/api/jobs.py): bulk operations and backfills that go on past
their request, a bounded page at a time, over the real API and moto.

The stacks here have no background round (interval of an hour): each test
drives the pages itself (`JobService.advance`, one page per call with a zero
budget, or the sweep round `tick`), and the request's own budget is zero, so
every request does exactly one page and a job of a few runs takes several.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.api import bulk as bulk_module
from orchestrator.api import jobs as jobs_module
from orchestrator.api import schedules as schedules_module
from orchestrator.client import Client
from orchestrator.errors import BadInputError, ConflictError, TooManyJobsError
from orchestrator.model import schedule_run_id

RUNS = 10  # selected runs; with a listing page of 4 (and one other run) that is 3 pages


@pytest.fixture
def quiet(make_stack: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(jobs_module, "REQUEST_BUDGET_S", 0.0)
    monkeypatch.setattr(bulk_module, "LIST_PAGE", 4)
    monkeypatch.setattr(bulk_module, "ACT_PAGE", 4)
    return make_stack(interval=3600)


def _runs(stack: Any) -> tuple[list[str], str]:
    ids = [stack.service.start("nobody-serves", {"n": i})[0].id for i in range(RUNS)]
    other = stack.service.start("someone-else", {})[0].id
    return ids, other


def _pages(stack: Any, job_id: str) -> int:
    """Advance the job a page at a time until it ends; how many pages that took."""
    pages = 0
    while stack.service.jobs.get(job_id).status == "running":
        stack.service.jobs.advance(job_id, 0.0)
        pages += 1
        assert pages < 100
    return pages


def _post(stack: Any, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(
        stack.api_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def _get(stack: Any, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(stack.api_url + path, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_bulk_cancel_past_its_request_is_202_then_goes_on_a_page_at_a_time(quiet: Any) -> None:
    client = Client(quiet.api_url)
    ids, other = _runs(quiet)
    status, headers, dry = _post(quiet, "/bulk/cancel", {"name": "nobody-serves"})
    assert status == 202 and headers["Location"] == f"/jobs/{dry['job_id']}"
    assert dry["status"] == "running" and dry["job"]["phase"] == "counting"
    assert dry["job"]["progress"]["examined"] == 4  # the request's one page
    assert _pages(quiet, dry["job_id"]) == 2
    counted = client.job(dry["job_id"])
    assert counted["status"] == "completed" and counted["result"]["count"] == RUNS
    assert set(counted["result"]["sample"]) == set(ids)
    assert all(quiet.store.get(i).status.value == "pending" for i in ids)  # a dry run

    acting = client.bulk(
        "cancel", name="nobody-serves", dry_run=False, confirm_count=RUNS, wait=None
    )
    assert acting["status"] == "running" and acting["job"]["phase"] == "counting"
    quiet.service.jobs.advance(acting["job_id"], 0.0)
    quiet.service.jobs.advance(acting["job_id"], 0.0)  # counted: now acting, no run touched
    assert client.job(acting["job_id"])["phase"] == "acting"
    assert all(quiet.store.get(i).status.value == "pending" for i in ids)
    quiet.service.jobs.advance(acting["job_id"], 0.0)  # one listing page acted on: the newest 4
    cancelled = [i for i in ids if quiet.store.get(i).status.value == "cancelled"]
    assert cancelled == ids[-4:] or sorted(cancelled) == sorted(ids[-4:])
    _pages(quiet, acting["job_id"])
    done = client.finish_job(acting)
    assert done["status"] == "completed" and done["outcomes"] == {"cancelled": RUNS}
    assert sorted(r["id"] for r in done["results"]) == sorted(ids)
    assert all(quiet.store.get(i).status.value == "cancelled" for i in ids)
    assert quiet.store.get(other).status.value == "pending"


def test_a_job_whose_advancer_died_is_taken_over_once_its_lease_runs_out(quiet: Any) -> None:
    ids, _ = _runs(quiet)
    job = quiet.service.jobs.start(
        "bulk", _bulk_request(quiet, confirm_count=RUNS), phase="counting"
    )
    # An advancer takes it (as `advance` does) and dies before its first page.
    now = quiet.clock.now_ms()
    held = quiet.service.jobs.store.save(
        job, replace(job, lease_until=now + jobs_module.JOB_LEASE_MS), now
    )
    assert held is not None
    quiet.tick()  # the sweep round: not due while held
    assert quiet.service.jobs.get(job.id).version == held.version
    quiet.clock.advance(jobs_module.JOB_LEASE_MS / 1000 + 1)
    for _ in range(20):
        quiet.tick()  # the sweep round's jobs pass: taken over, worked within its budget
        if quiet.service.jobs.get(job.id).status != "running":
            break
    done = quiet.service.jobs.get(job.id)
    assert done.status == "completed", done
    assert done.state["result"]["outcomes"] == {"cancelled": RUNS}
    assert all(quiet.store.get(i).status.value == "cancelled" for i in ids)


def test_a_page_that_raised_is_done_again_and_every_run_is_counted_once(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, _ = _runs(quiet)
    service = quiet.service
    real = service.cancel
    calls = {"n": 0}

    def flaky(workflow_id: str, reason: str | None = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 6:  # the second acting page, after the first of its runs
            raise ConnectionError("network gone")
        return real(workflow_id, reason)

    monkeypatch.setattr(service, "cancel", flaky)
    monkeypatch.setattr(bulk_module, "ACT_THREADS", 1)  # the order of calls is the page's
    job = service.jobs.start("bulk", _bulk_request(quiet, confirm_count=RUNS), phase="counting")
    _pages(quiet, job.id)
    done = service.jobs.get(job.id)
    assert done.status == "completed" and done.errors == 0
    outcomes = done.state["result"]["outcomes"]
    # The runs the failed page cancelled (its calls were all made) are cancelled
    # again on its redo: each run's outcome is counted once, from the redo.
    assert set(outcomes) == {"cancelled", "already_cancelled"}
    assert outcomes["cancelled"] + outcomes["already_cancelled"] == RUNS
    assert sorted(r["id"] for r in done.state["result"]["results"]) == sorted(ids)
    assert all(quiet.store.get(i).status.value == "cancelled" for i in ids)


def test_two_advancers_that_read_the_same_version_work_the_job_once(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, _ = _runs(quiet)
    service = quiet.service
    jobs = service.jobs
    job = jobs.start("bulk", _bulk_request(quiet, confirm_count=RUNS), phase="counting")
    # Both advancers read the job before either takes it: the same version.
    barrier = threading.Barrier(2)
    real_get = jobs.store.get
    reads = {"n": 0}
    lock = threading.Lock()

    def get(job_id: str) -> Any:
        got = real_get(job_id)
        with lock:
            reads["n"] += 1
            first_two = reads["n"] <= 2
        if first_two:
            barrier.wait(30)
        return got

    monkeypatch.setattr(jobs.store, "get", get)
    real_cancel = service.cancel
    cancels: list[str] = []

    def cancel(workflow_id: str, reason: str | None = None) -> Any:
        with lock:
            cancels.append(workflow_id)
        return real_cancel(workflow_id, reason)

    monkeypatch.setattr(service, "cancel", cancel)
    threads = [threading.Thread(target=lambda: jobs.advance(job.id, 30.0)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done = real_get(job.id)
    assert done.status == "completed"
    # One of them took it: each run cancelled once, each outcome recorded once.
    assert sorted(cancels) == sorted(ids)
    assert done.state["result"]["outcomes"] == {"cancelled": RUNS}
    assert all(quiet.store.get(i).status.value == "cancelled" for i in ids)


def test_a_count_that_changed_is_refused_by_the_job_and_touches_no_run(quiet: Any) -> None:
    client = Client(quiet.api_url)
    ids, _ = _runs(quiet)
    reply = client.bulk(
        "cancel", name="nobody-serves", dry_run=False, confirm_count=RUNS - 1, wait=None
    )
    _pages(quiet, reply["job_id"])
    job = client.job(reply["job_id"])
    assert job["status"] == "refused" and f"{RUNS} runs match now, not {RUNS - 1}" in job["message"]
    with pytest.raises(ConflictError, match="runs match now"):
        client.finish_job(reply)
    assert all(quiet.store.get(i).status.value == "pending" for i in ids)


def test_past_the_run_limit_a_dry_run_says_so_and_acting_is_refused(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_module, "REQUEST_BUDGET_S", 30.0)
    monkeypatch.setattr(bulk_module, "MAX_BULK_RUNS", 3)
    client = Client(quiet.api_url)
    ids, _ = _runs(quiet)
    counted = client.bulk("cancel", name="nobody-serves")
    assert counted["status"] == "completed" and counted["truncated"] and counted["count"] == 3
    with pytest.raises(BadInputError, match="more than 3 runs match"):
        client.bulk("cancel", name="nobody-serves", dry_run=False, confirm_count=3)
    assert all(quiet.store.get(i).status.value == "pending" for i in ids)


def test_past_the_running_jobs_limit_a_new_job_is_429_until_one_ends(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_module, "MAX_RUNNING_JOBS", 1)
    client = Client(quiet.api_url)
    _runs(quiet)
    first = client.bulk("cancel", name="nobody-serves", wait=None)
    assert first["status"] == "running"
    status, _, refused = _post(quiet, "/bulk/terminate", {"name": "nobody-serves"})
    assert status == 429 and refused["error"]["code"] == "too_many_jobs"
    assert "1 jobs are running" in refused["error"]["message"]
    with pytest.raises(TooManyJobsError):
        client.bulk("terminate", name="nobody-serves", wait=None)
    stopped = client.cancel_job(first["job_id"])
    assert stopped["outcome"] == "cancelled" and stopped["status"] == "cancelled"
    assert client.cancel_job(first["job_id"])["outcome"] == "already_ended"
    examined = stopped["progress"]["examined"]
    quiet.service.jobs.advance(first["job_id"], 0.0)  # a cancelled job does no more pages
    assert client.job(first["job_id"])["progress"]["examined"] == examined
    assert client.bulk("terminate", name="nobody-serves", wait=None)["status"] == "running"


def test_a_backfill_past_its_request_starts_each_tick_once_a_page_at_a_time(
    quiet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedules_module, "BACKFILL_PAGE", 7)
    client = Client(quiet.api_url)
    client.create_schedule("hourly", "nobody-serves", expression="cron(0 * * * ? *)")
    now = datetime.fromtimestamp(quiet.clock.now_ms() / 1000, tz=UTC)
    start = (now - timedelta(hours=24)).isoformat()
    end = (now - timedelta(minutes=1)).isoformat()
    first = client.backfill_schedule("hourly", start, end, wait=None)
    assert first["status"] == "running" and first["job"]["progress"]["ticks_done"] == 7
    total = first["job"]["progress"]["total"]
    assert total in (23, 24)
    assert _pages(quiet, first["job_id"]) == -(-total // 7) - 1
    done = client.finish_job(first)
    assert done["ticks"] == total and done["started_count"] == total == len(done["started"])
    ticks = [run_id.rsplit("-", 1)[1] for run_id in done["started"]]
    assert ticks == sorted(ticks) and len(set(ticks)) == total  # oldest first, each once
    first_tick = datetime.strptime(ticks[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert done["started"][0] == schedule_run_id("hourly", int(first_tick.timestamp() * 1000))
    assert first_tick.minute == 0 and first_tick > now - timedelta(hours=24)
    again = client.backfill_schedule("hourly", start, end, wait=None)
    _pages(quiet, again["job_id"])
    repeat = client.finish_job(again)
    assert repeat["started_count"] == 0 and repeat["skipped"] == done["started"]


def test_a_backfill_whose_schedule_was_deleted_fails_with_the_reason(quiet: Any) -> None:
    client = Client(quiet.api_url)
    client.create_schedule("hourly", "nobody-serves", expression="cron(0 * * * ? *)")
    now = datetime.fromtimestamp(quiet.clock.now_ms() / 1000, tz=UTC)
    reply = client.backfill_schedule(
        "hourly", (now - timedelta(days=3)).isoformat(), now.isoformat(), wait=None
    )
    client.delete_schedule("hourly")
    _pages(quiet, reply["job_id"])
    job = client.job(reply["job_id"])
    assert job["status"] == "failed" and "no schedule named 'hourly'" in job["message"]


def test_jobs_list_newest_first_in_pages_and_bad_ids_are_400(quiet: Any) -> None:
    client = Client(quiet.api_url)
    _runs(quiet)
    made = [client.bulk("cancel", name="nobody-serves", wait=None)["job_id"] for _ in range(3)]
    first = client.jobs(limit=2)
    assert [j["id"] for j in first["jobs"]] == made[::-1][:2] and first["cursor"] == made[1]
    rest = client.jobs(limit=2, cursor=first["cursor"])
    assert [j["id"] for j in rest["jobs"]] == [made[0]] and rest["cursor"] is None
    assert _get(quiet, "/jobs/nope")[0] == 400
    assert _get(quiet, "/jobs/0000000000000-00000000")[0] == 404
    assert _get(quiet, "/jobs?limit=101")[0] == 400
    assert _get(quiet, "/jobs?cursor=x")[0] == 400
    assert _get(quiet, "/jobs?since=1")[0] == 400


def _bulk_request(stack: Any, *, confirm_count: int) -> dict[str, Any]:
    return {
        "action": "cancel",
        "name": "nobody-serves",
        "status": None,
        "created_after": None,
        "created_before": None,
        "selected_before": stack.clock.now_ms(),
        "dry_run": False,
        "confirm_count": confirm_count,
        "reason": None,
    }


def test_the_cli_follows_a_job_and_lists_shows_and_cancels_jobs(
    quiet: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator import resources as r
    from orchestrator.cli import main

    monkeypatch.setenv(r.ENV_API_URL, quiet.api_url)
    ids, _ = _runs(quiet)
    # --no-wait: the job's id, and back at once.
    assert main(["bulk", "cancel", "--name", "nobody-serves", "--no-wait"]) == 0
    said = capsys.readouterr()
    job_id = said.err.split("job ", 1)[1].split()[0]
    assert f"orchestrator jobs show {job_id} --wait" in said.err
    assert main(["jobs", "list"]) == 0
    listed = capsys.readouterr().out
    assert job_id in listed and "running" in listed and "bulk cancel" in listed
    assert main(["jobs", "show", job_id]) == 0
    assert "status: running (4 runs examined, 4 match)" in capsys.readouterr().out
    assert main(["jobs", "cancel", job_id]) == 0
    assert f"job {job_id} cancelled" in capsys.readouterr().out
    assert main(["jobs", "show", job_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    # Waiting (the default): the stack has no background round here, so the
    # sweeper's part is played by a thread that works the job meanwhile.
    stop = threading.Event()

    def sweeper() -> None:
        while not stop.wait(0.05):
            quiet.service.jobs.advance_due(1.0)

    helper = threading.Thread(target=sweeper, daemon=True)
    helper.start()
    try:
        assert main(["bulk", "cancel", "--name", "nobody-serves", "--yes"]) == 0
    finally:
        stop.set()
        helper.join(10)
    done = capsys.readouterr()
    assert "goes on past the request" in done.err
    assert f"cancel: {RUNS} run(s): {RUNS} cancelled" in done.out
    assert all(quiet.store.get(i).status.value == "cancelled" for i in ids)
