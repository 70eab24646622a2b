"""Callbacks: completed, failed, timed out (overall and heartbeat), completed
before the wait and racing the park, completed twice, too late, for a finished
run, with an unknown id or a bad body; the token survives replay."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import pytest

from orchestrator import BadInputError, Client, ConflictError, NotFoundError
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import MAX_SIGNAL_PAYLOAD_BYTES, StepKind, StepRecord
from orchestrator.store import callbacks as cbstore
from orchestrator.store.codec import from_item
from tests.helpers import wait_for, wait_status
from worker import CallbackFailedError, CallbackTimeoutError, workflow
from worker._store import AsyncStore, Refused

HOUR = 3600


def _echo(value: Any) -> Any:
    return value


@workflow("cb-approval")
async def approval(ctx, input: dict) -> Any:
    cb = await ctx.create_callback(
        "approval",
        timeout=input.get("timeout"),
        heartbeat_timeout=input.get("heartbeat"),
    )
    await ctx.step("notify", _echo, cb.id)
    if input.get("skip"):
        return "skipped"
    if input.get("pause"):
        await ctx.sleep("pause", input["pause"])
    try:
        return {"ok": await cb.result()}
    except CallbackFailedError as e:
        return {"failed": [e.error_type, e.error_message]}
    except CallbackTimeoutError as e:
        return {"timeout": e.kind}


@workflow("cb-submit")
async def submit(ctx, input: dict) -> Any:
    return await ctx.wait_for_callback("job", _echo, timeout=timedelta(days=1))


@workflow("cb-replay")
async def replay(ctx, input: dict) -> Any:
    cb = await ctx.create_callback("token", timeout=None)
    first = await ctx.step("first", _echo, cb.id)
    await ctx.sleep("pause", 2 * HOUR)  # parks: the rest runs on a replay
    return [first, cb.id]


FLOWS = [approval, submit, replay]


def _token(stack, run_id: str) -> str:
    def find() -> str | None:
        for s in stack.store.steps(run_id):
            if s.kind == StepKind.CALLBACK:
                return s.callback_id
        return None

    return wait_for(find)


def _lookup(stack, token: str) -> dict[str, Any]:
    item = stack.ddb.get_item(**cbstore.get_lookup(stack.settings.table, token)).get("Item")
    return from_item(item) if item else {}


def _raw(stack, path: str, body: bytes | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(stack.api_url + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_callbacks_succeed_or_fail_and_a_second_completion_is_refused(stack, caplog) -> None:
    caplog.set_level(logging.INFO)
    client = Client(stack.api_url)
    with BackgroundWorker(FLOWS, stack.settings, clock=stack.clock):
        ok = client.start("cb-approval", {"timeout": 3 * 86_400})
        bad = client.start("cb-approval", {"timeout": 3 * 86_400})
        wait_status(stack, ok["id"], "waiting")
        wait_status(stack, bad["id"], "waiting")
        token = _token(stack, ok["id"])
        assert len(token) >= 22  # at least 128 random bits
        waiting = client.get(ok["id"])
        assert waiting["waiting_for"] is None and waiting["waiting_for_callbacks"] == ["0"]
        assert client.callback_succeed(token, {"approved": True}) == {
            "outcome": "succeeded",
            "woke": True,
        }
        assert client.callback_fail(_token(stack, bad["id"]), "Rejected", "over budget")["woke"]
        done = wait_status(stack, ok["id"], "completed")
        failed = wait_status(stack, bad["id"], "completed")
    assert json.loads(done.output) == {"ok": {"approved": True}}
    assert json.loads(failed.output) == {"failed": ["Rejected", "over budget"]}
    with pytest.raises(ConflictError, match="already completed"):
        client.callback_succeed(token, 2)
    with pytest.raises(ConflictError, match="already completed"):
        client.callback_fail(token, "Late", "too late")
    step = next(s for s in client.steps(ok["id"]) if s["kind"] == "callback")
    assert step["resolved"] and step["result"] == {"approved": True} and step["error"] is None
    rejected = next(s for s in client.steps(bad["id"]) if s["kind"] == "callback")
    assert rejected["result"] is None
    assert rejected["error"] == {"type": "Rejected", "message": "over budget"}
    assert step["callback_id"] == token[:6] + "…"  # never shown in full
    assert f"{token[:6]}…" in caplog.text and token not in caplog.text  # nor logged


def test_timeouts_early_completions_finished_runs_submitters_and_replays(stack) -> None:
    """Five runs on one worker and one skip of the clock: a callback that times
    out (a late completion is refused), one completed before the run waits (it
    is kept), one whose run finished without waiting (refused, nothing
    written), wait_for_callback's submitter step, and a replay's token."""
    client = Client(stack.api_url)
    with BackgroundWorker(FLOWS, stack.settings, clock=stack.clock):
        late = client.start("cb-approval", {"timeout": 2 * HOUR})["id"]
        early = client.start("cb-approval", {"timeout": 3 * 86_400, "pause": 2 * HOUR})["id"]
        skipped = client.start("cb-approval", {"timeout": 3 * 86_400, "skip": True})["id"]
        submitted = client.start("cb-submit", {})["id"]
        replayed = client.start("cb-replay", {})["id"]
        wait_status(stack, late, "waiting")
        wait_status(stack, early, "sleeping")
        wait_status(stack, skipped, "completed")
        wait_status(stack, submitted, "waiting")
        wait_status(stack, replayed, "sleeping")
        # Completed before the run waits: nobody to wake; it is in the inbox.
        assert client.callback_succeed(_token(stack, early), "early")["woke"] is False
        # The run finished without waiting: refused, nothing written.
        with pytest.raises(ConflictError, match="completed"):
            client.callback_succeed(_token(stack, skipped), 1)
        assert "completed_at" not in _lookup(stack, _token(stack, skipped))
        # wait_for_callback hands the id to its submitter step.
        steps = client.steps(submitted)
        handed = next(s for s in steps if s["name"] == "job-submit")["result"]
        assert handed == _token(stack, submitted)
        client.callback_succeed(handed, [1, 2])
        stack.clock.advance(2 * HOUR)
        assert json.loads(wait_status(stack, late, "completed").output) == {"timeout": "timeout"}
        with pytest.raises(ConflictError, match="timed out"):
            client.callback_succeed(_token(stack, late), 1)
        assert json.loads(wait_status(stack, early, "completed").output) == {"ok": "early"}
        assert json.loads(wait_status(stack, submitted, "completed").output) == [1, 2]
        first, again = json.loads(wait_status(stack, replayed, "completed").output)
    assert stack.store.signals(late, "sys:cb:0") == []
    assert first == again == _token(stack, replayed)  # the same token after the replay


def test_heartbeats_keep_a_callback_alive_until_they_stop(stack) -> None:
    client = Client(stack.api_url)
    with BackgroundWorker(FLOWS, stack.settings, clock=stack.clock):
        run = client.start("cb-approval", {"timeout": 10 * 86_400, "heartbeat": HOUR})
        first = wait_status(stack, run["id"], "waiting")
        token = _token(stack, run["id"])
        created = stack.store.steps(run["id"])[0].started_at
        assert first.wake_at == created + HOUR * 1000  # the heartbeat deadline, not the timeout
        stack.clock.advance(50 * 60)
        beat = client.callback_heartbeat(token)
        assert beat["heartbeat_deadline"] is not None
        moved = _lookup(stack, token)["heartbeat_deadline"]
        assert moved > created + HOUR * 1000
        # The wait wakes at the deadline it knew, finds it moved, and waits again.
        stack.clock.advance(20 * 60)
        wait_for(lambda: stack.store.get(run["id"]).wake_at == moved)
        assert stack.store.get(run["id"]).status.value == "waiting"
        # No more heartbeats: it times out at the moved deadline.
        stack.clock.advance(60 * 60)
        done = wait_status(stack, run["id"], "completed")
        assert json.loads(done.output) == {"timeout": "heartbeat"}
        with pytest.raises(ConflictError, match="heartbeat"):
            client.callback_heartbeat(token)
        with pytest.raises(ConflictError, match="heartbeat"):
            client.callback_succeed(token, 1)


def test_unknown_ids_are_404_and_write_nothing(stack) -> None:
    client = Client(stack.api_url)
    for token in ("A" * 32, "short", "has.dot" * 5):
        with pytest.raises(NotFoundError):
            client.callback_succeed(token, 1)
        with pytest.raises(NotFoundError):
            client.callback_heartbeat(token)
    assert stack.store.list_runs().runs == []
    assert stack.ddb.scan(TableName=stack.settings.table)["Count"] == 0


def _recorded_callback(stack, run_id: str, op: str, token: str, *, timeout_ms: int) -> None:
    """A callback as a worker records it (record and lookup), without a worker."""
    now = stack.clock.now_ms()
    rec = StepRecord(
        op, "approval", StepKind.CALLBACK, 1, now, started_at=now,
        signal=cbstore.callback_signal(op), wake_at=now + timeout_ms, callback_id=token,
    )  # fmt: skip
    stack.ddb.transact_write_items(
        **cbstore.create(stack.settings.table, run_id, rec, heartbeat_ms=0)
    )


def test_bad_bodies_are_refused_and_write_nothing(stack) -> None:
    client = Client(stack.api_url)
    run, _ = stack.service.start("cb-approval", {})
    token = "d" * 32
    _recorded_callback(stack, run.id, "0", token, timeout_ms=3_600_000)
    big = json.dumps({"result": "x" * (MAX_SIGNAL_PAYLOAD_BYTES + 10)}).encode()
    cases = [
        ("succeed", b"{not json", 400, "not valid JSON"),
        ("succeed", b"[1]", 400, "JSON object"),
        ("succeed", b'{"result": 1, "extra": 2}', 400, "extra"),
        ("succeed", big, 413, "limit"),
        ("succeed", b"x" * (600 * 1024), 413, "over"),
        ("fail", b"{}", 400, "error: Field required"),
        ("fail", b'{"error": {"type": 5}}', 400, "error.type"),
        ("fail", b'{"error": {"type": ""}}', 400, "error.type"),
        ("fail", b'{"error": "boom"}', 400, "error"),
        ("heartbeat", b'{"x": 1}', 400, "Extra"),
    ]
    for action, body, status, fragment in cases:
        code, reply = _raw(stack, f"/callbacks/{token}/{action}", body)
        assert (code, fragment in reply["error"]["message"]) == (status, True), (action, reply)
    assert stack.store.signals(run.id, "sys:cb:0") == []
    assert "completed_at" not in _lookup(stack, token)
    assert stack.store.get(run.id).signal_seq == 0
    with pytest.raises(BadInputError):
        client.callback_succeed(token, float("nan"))  # refused by the client: not JSON
    # An empty body is a success with no result.
    assert _raw(stack, f"/callbacks/{token}/succeed", b"")[0] == 202
    assert [s.payload for s in stack.store.signals(run.id, "sys:cb:0")] == [
        '{"ok":true,"result":null}'
    ]


def _claim_and_create(stack, run_id: str, store: AsyncStore) -> Any:
    async def go() -> tuple[Any, list[str]]:
        now = stack.clock.now_ms()
        claimed = await store.claim(
            run_id, owner="w", now=now, lease_ms=30_000, names=["cb-approval"]
        )
        tokens = []
        for op in ("0", "1"):
            rec = StepRecord(
                op,
                "approval",
                StepKind.CALLBACK,
                claimed.epoch,
                now,
                started_at=now,
                signal=cbstore.callback_signal(op),
                wake_at=now + 86_400_000,
                callback_id=f"tok{op}" * 8,
            )
            await store.ddb.transact_write_items(
                **cbstore.create(stack.settings.table, run_id, rec, heartbeat_ms=0)
            )
            tokens.append(rec.callback_id)
        return claimed, tokens

    return go()


def test_the_park_is_refused_when_a_completion_arrived_after_the_inbox_check(stack) -> None:
    """The interleaving that would lose a completion, forced step by step."""
    run, _ = stack.service.start("cb-approval", {})

    async def scenario() -> bool:
        import aioboto3

        kw = {"region_name": stack.settings.region, "endpoint_url": stack.settings.endpoint_url}
        async with aioboto3.Session().client("dynamodb", **kw) as ddb:
            store = AsyncStore(ddb, None, None, stack.settings)
            claimed, (first, second) = await _claim_and_create(stack, run.id, store)
            now = stack.clock.now_ms()
            assert await store.inbox(run.id, "sys:cb:0") == []  # the worker looks: empty
            _, woke, _ = cbstore.send_completion(stack.store, first, '{"ok":true}', grace_ms=1000)
            assert woke is False  # the run is running: nothing to wake
            refused = await store.park_wait(
                run.id,
                epoch=claimed.epoch,
                now=now,
                signal="sys:cb:0",
                seen_seq=claimed.signal_seq,
                deadline=None,
            )
            assert isinstance(refused, Refused)  # signal_seq moved: look again
            assert len(await store.inbox(run.id, "sys:cb:0")) == 1
            # The other order: parked on the second callback, then its completion wakes it.
            parked = await store.park_wait(
                run.id,
                epoch=claimed.epoch,
                now=now,
                signal="sys:cb:1",
                seen_seq=refused.old.signal_seq,
                deadline=None,
            )
            assert parked is None
            _, woke, _ = cbstore.send_completion(stack.store, second, '{"ok":true}', grace_ms=1000)
            return woke

    assert asyncio.run(scenario()) is True
    assert stack.store.get(run.id).status.value == "pending"


def test_completions_racing_the_park_are_never_missed(stack, monkeypatch) -> None:
    """Real workers, with each run's completion forced into the gap between the
    worker's look at the callback's inbox (empty) and its park write, by two
    racing completers: the park's `signal_seq = seen` condition refuses every
    park, the worker looks again, and every run completes with exactly one
    result, without parking."""
    n = 4
    name = cbstore.callback_signal("0")
    looks: dict[str, list[int]] = {}  # run -> what each look at its inbox found
    seen_at_race: dict[str, list[int]] = {}  # run -> its looks when the completions went out
    parks: dict[str, list[str]] = {}
    accepted: list[str] = []
    errors: list[BaseException] = []
    real_inbox, real_park_wait = AsyncStore.inbox, AsyncStore.park_wait

    def complete(token: str, value: str, start: threading.Barrier) -> None:
        start.wait()
        try:
            Client(stack.api_url).callback_succeed(token, value)
            accepted.append(value)
        except ConflictError:
            pass  # the other completer won
        except BaseException as e:
            errors.append(e)

    def race(run_id: str) -> None:
        token, start = _token(stack, run_id), threading.Barrier(2)
        threads = [
            threading.Thread(target=complete, args=(token, f"{run_id}/{k}", start))
            for k in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    async def look(self: AsyncStore, workflow_id: str, signal: str) -> Any:
        found = await real_inbox(self, workflow_id, signal)
        if signal == name:
            looks.setdefault(workflow_id, []).append(len(found))
        return found

    async def complete_then_park(self: AsyncStore, workflow_id: str, **kw: Any) -> Any:
        if workflow_id not in parks:  # the run's first park: both completions land first
            seen_at_race[workflow_id] = list(looks.get(workflow_id, []))
            await asyncio.to_thread(race, workflow_id)
        result = await real_park_wait(self, workflow_id, **kw)
        parks.setdefault(workflow_id, []).append(
            "refused" if isinstance(result, Refused) else "parked"
        )
        return result

    monkeypatch.setattr(AsyncStore, "inbox", look)
    monkeypatch.setattr(AsyncStore, "park_wait", complete_then_park)
    with BackgroundWorker(FLOWS, stack.settings, clock=stack.clock, max_concurrent_workflows=8):
        ids = [stack.service.start("cb-approval", {"timeout": 86_400})[0].id for _ in range(n)]
        wait_for(lambda: all(i in parks for i in ids), timeout=30)
        # The interleaving happened for every run: the look found nothing, the
        # completions landed, and the park was refused.
        assert {i: seen_at_race[i] for i in ids} == {i: [0] for i in ids}
        assert {i: parks[i] for i in ids} == {i: ["refused"] for i in ids}
        assert errors == []
        for i in ids:
            done = wait_status(stack, i, "completed", timeout=30)
            value = json.loads(done.output)["ok"]
            assert value in accepted and value.startswith(i)
    assert {i: parks[i] for i in ids} == {i: ["refused"] for i in ids}  # never parked
    assert len(accepted) == n  # exactly one completion per callback was accepted


def test_the_cli_completes_and_heartbeats_callbacks(stack, capsys, monkeypatch) -> None:
    from orchestrator.cli import main

    monkeypatch.setenv("ORCHESTRATOR_API_URL", stack.api_url)
    with BackgroundWorker(FLOWS, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("cb-approval", {"timeout": 86_400, "heartbeat": HOUR})
        wait_status(stack, run.id, "waiting")
        token = _token(stack, run.id)
        assert main(["steps", run.id]) == 0
        shown = "".join(capsys.readouterr().out.split())  # the OUTCOME column folds
        assert f"waitingforcallback'approval'(id{token[:6]}…)" in shown
        assert main(["callback", "heartbeat", token]) == 0
        assert "heartbeat recorded" in capsys.readouterr().out
        assert main(["callback", "succeed", token, "--result", '{"n": 1}']) == 0
        assert "callback succeeded: it woke the run" in capsys.readouterr().out
        done = wait_status(stack, run.id, "completed")
    assert json.loads(done.output) == {"ok": {"n": 1}}
    assert main(["callback", "fail", token, "--type", "Late"]) == 1
    assert "already completed" in capsys.readouterr().err
    assert main(["callback", "succeed", "A" * 32]) == 1
    assert "no callback with that id" in capsys.readouterr().err


def test_a_losing_create_writes_neither_item(stack) -> None:
    """Two writers creating the callback at one id: the first wins both items;
    the second writes nothing, so no lookup item names a token that was not
    recorded."""
    from botocore.exceptions import ClientError

    run, _ = stack.service.start("cb-approval", {})
    now = stack.clock.now_ms()

    def create(token: str) -> None:
        rec = StepRecord(
            "0", "approval", StepKind.CALLBACK, 1, now, started_at=now,
            signal="sys:cb:0", wake_at=now + 1000, callback_id=token,
        )  # fmt: skip
        stack.ddb.transact_write_items(
            **cbstore.create(stack.settings.table, run.id, rec, heartbeat_ms=0)
        )

    create("first" * 5)
    with pytest.raises(ClientError, match="TransactionCanceled"):
        create("second" * 5)
    assert _lookup(stack, "first" * 5)["op_id"] == "0"
    assert _lookup(stack, "second" * 5) == {}
    assert stack.store.steps(run.id)[0].callback_id == "first" * 5


def test_the_close_at_a_timeout_and_a_completion_exclude_each_other(stack) -> None:
    """A completion stamped before the deadline but committed after the worker
    looked at its inbox: the worker's close and the completion cannot both win."""
    from botocore.exceptions import ClientError

    run, _ = stack.service.start("cb-approval", {})
    now = stack.clock.now_ms()
    for op, token in (("0", "a" * 32), ("1", "b" * 32)):
        rec = StepRecord(
            op, "approval", StepKind.CALLBACK, 1, now, started_at=now,
            signal=f"sys:cb:{op}", wake_at=now + 3_600_000, callback_id=token,
        )  # fmt: skip
        stack.ddb.transact_write_items(
            **cbstore.create(stack.settings.table, run.id, rec, heartbeat_ms=0)
        )
    # The worker closes first: the completion is refused though its clock is early.
    stack.ddb.update_item(**cbstore.close(stack.settings.table, "a" * 32, now=now))
    with pytest.raises(ConflictError, match="timed out"):
        cbstore.send_completion(stack.store, "a" * 32, '{"ok":true}', grace_ms=1000)
    assert stack.store.signals(run.id, "sys:cb:0") == []
    # The completion commits first: the close is refused, the signal is in the inbox.
    cbstore.send_completion(stack.store, "b" * 32, '{"ok":true}', grace_ms=1000)
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        stack.ddb.update_item(**cbstore.close(stack.settings.table, "b" * 32, now=now))
    assert len(stack.store.signals(run.id, "sys:cb:1")) == 1


def test_logged_callback_paths_show_a_token_prefix_only() -> None:
    from orchestrator.api.callbacks import loggable_path

    token = "Zq" * 16
    assert loggable_path(f"/callbacks/{token}/succeed") == "/callbacks/ZqZqZq…/succeed"
    assert loggable_path("/workflows/abc") == "/workflows/abc"


def test_a_completion_resent_after_a_lost_answer_is_still_accepted(stack) -> None:
    """The SDK re-sends a transaction whose answer was lost; the re-send is refused
    because the first one applied. The API sees its own completion id and answers
    202, not 409."""
    from orchestrator import testing_faults as faults
    from orchestrator.aws import client as aws_client
    from orchestrator.store import Store

    run, _ = stack.service.start("cb-approval", {})
    now = stack.clock.now_ms()
    rec = StepRecord(
        "0", "approval", StepKind.CALLBACK, 1, now, started_at=now,
        signal="sys:cb:0", wake_at=now + 3_600_000, callback_id="c" * 32,
    )  # fmt: skip
    stack.ddb.transact_write_items(
        **cbstore.create(stack.settings.table, run.id, rec, heartbeat_ms=0)
    )
    ddb = aws_client("dynamodb", stack.settings)
    faults.reset()  # plans are per process: another test's would count here
    faults.install(
        ddb, json.dumps({"rules": [{"kind": "lost_retry", "op": "dynamodb.TransactWriteItems"}]})
    )
    try:
        store = Store(ddb, stack.settings.table, stack.clock)
        ref, woke, _ = cbstore.send_completion(store, "c" * 32, '{"ok":true}', grace_ms=1000)
        assert faults.stats() == {"lost_retry": 1}
    finally:
        faults.reset()
    assert ref.completed_at is not None and woke is False
    assert len(stack.store.signals(run.id, "sys:cb:0")) == 1  # stored once
    with pytest.raises(ConflictError, match="already completed"):  # a second request: 409
        cbstore.send_completion(stack.store, "c" * 32, '{"ok":true}', grace_ms=1000)
