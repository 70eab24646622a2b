"""Every DynamoDB request the store builds binds exactly the placeholders its
expressions use: a `:value` or `#name` bound and not used, or used and not
bound, is a ValidationException on DynamoDB (the claim once bound every
workflow name of the module and used only the ones served on the polled task
queues, and every claim failed). The builders are walked with varied inputs,
the claim's (names, task queues, build, pinned names) drawn by hypothesis."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.model import ClaimFailure, ErrorInfo, Signal, Status, StepKind, StepRecord
from orchestrator.store import callbacks, endings, flow, generations, sweeps
from orchestrator.store import record_requests as rq
from orchestrator.store import requests as q

T, WID = "t", "run-1"
EXPRESSIONS = (
    "UpdateExpression",
    "ConditionExpression",
    "KeyConditionExpression",
    "FilterExpression",
    "ProjectionExpression",
)
VALUE = re.compile(r":[A-Za-z0-9_]+")
NAME = re.compile(r"#[A-Za-z0-9_]+")


def _requests(req: Any) -> Iterator[dict[str, Any]]:
    """Every request inside `req` that carries expressions (a transaction's items too)."""
    if isinstance(req, dict):
        if any(k in req for k in EXPRESSIONS):
            yield req
        for v in req.values():
            yield from _requests(v)
    elif isinstance(req, list):
        for v in req:
            yield from _requests(v)


def placeholder_problems(req: Any) -> list[str]:
    problems = []
    for r in _requests(req):
        text = " ".join(r[k] for k in EXPRESSIONS if k in r)
        for kind, pattern, bound in (
            ("value", VALUE, set(r.get("ExpressionAttributeValues") or {})),
            ("name", NAME, set(r.get("ExpressionAttributeNames") or {})),
        ):
            used = set(pattern.findall(text))
            problems += [f"{kind} {p} bound, unused" for p in sorted(bound - used)]
            problems += [f"{kind} {p} used, unbound" for p in sorted(used - bound)]
        if "ExpressionAttributeValues" in r and not r["ExpressionAttributeValues"]:
            problems.append("empty ExpressionAttributeValues")
    return problems


def test_the_check_sees_an_unused_and_a_missing_placeholder() -> None:
    ok = {"ConditionExpression": "#a = :a", "ExpressionAttributeNames": {"#a": "a"}}
    assert placeholder_problems({**ok, "ExpressionAttributeValues": {":a": {"N": "1"}}}) == []
    extra = {**ok, "ExpressionAttributeValues": {":a": {"N": "1"}, ":n1": {"S": "x"}}}
    assert placeholder_problems({"TransactItems": [{"Update": extra}]}) == [
        "value :n1 bound, unused"
    ]
    assert placeholder_problems({**ok, "ExpressionAttributeValues": {}}) == [
        "value :a used, unbound",
        "empty ExpressionAttributeValues",
    ]


QUEUES = ("default", "gpu", "bulk")


@st.composite
def claims(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True))
    build = draw(st.none() | st.sampled_from(("b1", "b2")))
    queues = None
    if draw(st.booleans()):
        queues = {
            queue: draw(st.lists(st.sampled_from(names), unique=True))
            for queue in draw(st.lists(st.sampled_from(QUEUES), min_size=1, unique=True))
        }
        if not any(queues.values()):
            queues[QUEUES[0]] = names[:1]
    pinned = draw(st.lists(st.sampled_from(names), unique=True)) if build else []
    return dict(names=names, build_id=build, queues=queues, pinned_names=pinned)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(options=claims())
def test_every_claim_binds_exactly_what_it_uses(options: dict[str, Any]) -> None:
    req = q.claim(T, WID, owner="w", now=1, lease_ms=1000, **options)
    assert placeholder_problems(req) == [], options


def test_a_module_with_a_workflow_on_an_unpolled_queue_claims_with_a_valid_request() -> None:
    # The reported case: mini-b declared on gpu, the worker polls default only.
    req = q.claim(
        T,
        WID,
        owner="w",
        now=1,
        lease_ms=1000,
        names=["mini-a", "mini-b"],
        queues={"default": ["mini-a"]},
    )
    assert placeholder_problems(req) == []
    assert req["ExpressionAttributeValues"][":n0"] == {"S": "mini-a"}


ERR = ErrorInfo("E", "boom")
STEP = StepRecord("0", "s", StepKind.STEP, 1, 1, result="1", resolved=True)
WAIT = StepRecord("1", "w", StepKind.WAIT, 1, 1, signal="go", wake_at=9)
SIG = Signal(name="go", seq=1, payload="1", sent_at=1)
PARKED = (Status.SLEEPING, Status.WAITING)


def _cases() -> Iterator[tuple[Callable[..., Any], dict[str, Any]]]:
    """(builder, keyword arguments): each builder with the inputs that change
    the shape of its expressions."""
    for timer in (None, "tm-1"):
        yield q.park_sleep, dict(epoch=1, now=1, wake_at=5, due_at=6, timer=timer)
        for deadline, due in ((None, None), (5, 6)):
            yield (
                q.park_wait,
                dict(
                    epoch=1,
                    now=1,
                    signal="go",
                    seen_seq=0,
                    deadline=deadline,
                    due_at=due,
                    timer=timer,
                ),
            )
    for status in (Status.COMPLETED, Status.FAILED):
        for output in (None, '"x"'):
            for error in (None, ERR):
                for notify in (None, 7):
                    for batch in (None, "[]"):
                        yield (
                            q.finish,
                            dict(
                                epoch=1,
                                now=2,
                                status=status,
                                output=output,
                                error=error,
                                notify_due=notify,
                                last_batch=batch,
                            ),
                        )
    yield q.heartbeat, dict(epoch=1, lease_until=2)
    yield q.release, dict(epoch=1, due_at=3)
    yield q.pin, dict(epoch=1, build_id="b1")
    for seen in (Status.RUNNING, *PARKED, Status.PENDING):
        yield q.migrate, dict(seen_status=seen, epoch=1, from_build="a", to_build="b", now=1)
    retrying = StepRecord("0", "s", StepKind.STEP, 1, 1, attempts=[{}, {}])
    for attempt in (0, 2):  # a run never redriven, and one in its third attempt
        for rec in (STEP, WAIT, retrying):
            yield rq.put_step, dict(rec=replace(rec, run_attempt=attempt))
        yield rq.resolve_wait_timeout, dict(op_id="1", now=1, attempt=attempt)
        wait = replace(WAIT, run_attempt=attempt)
        yield rq.consume_signal, dict(wait=wait, signal=SIG, now=1, ttl_s=60)
        # A signal counted in this attempt's inbox: its consumption takes it out again.
        counted = replace(SIG, attempt=attempt, size=1)
        yield rq.consume_signal, dict(wait=wait, signal=counted, now=1, ttl_s=60)
    yield rq.put_batch, dict(epoch=1, now=1, records=[STEP, WAIT])
    failure = ClaimFailure("ValueUnavailableError", "gone", 2)
    yield q.record_claim_failure, dict(epoch=1, now=1, failure=failure, retry_at=2, due_at=3)
    yield rq.query_history, dict(generation=0)
    yield rq.query_history, dict(generation=2)
    yield rq.query_inbox, dict(name="go")
    yield rq.query_leftover_signals, dict()
    yield rq.expire_signal, dict(sort_key="SIG#go#000000000001", expires_at=9)
    for seen in (Status.RUNNING, *PARKED, Status.PENDING):
        for wake in (False, True):
            for limit in (None, (1000, 1 << 20)):  # the engine's own signal, the API's
                yield (
                    rq.send_signal,
                    dict(
                        signal=SIG,
                        prev_seq=0,
                        seen_status=seen,
                        epoch=1,
                        now=1,
                        wake=wake,
                        due_at=6,
                        attempt=2,
                        limit=limit,
                    ),
                )
            for sig in (None, SIG):
                yield (
                    endings.notify_parent,
                    dict(
                        parent_id="p",
                        signal=sig,
                        prev_seq=0,
                        seen_status=seen,
                        epoch=1,
                        now=1,
                        wake=wake,
                        due_at=6,
                    ),
                )
    for notify in (None, 7):
        yield sweeps.fail_poisoned, dict(epoch=1, now=1, error=ERR, notify_due=notify)
        for seen in (Status.RUNNING, *PARKED, Status.PENDING):
            yield (
                sweeps.fail_timed_out,
                dict(epoch=1, seen=seen, now=1, error=ERR, notify_due=notify),
            )
            yield (
                endings.cancel_parked,
                dict(epoch=1, seen=seen, now=1, reason="r", notify_due=notify),
            )
    for status in (Status.RUNNING, Status.PENDING, *PARKED):
        for dispatch in (False, True):
            yield sweeps.promote, dict(epoch=1, status=status, due_at=6, dispatch=dispatch)
        for count in (False, True):
            yield sweeps.rearm, dict(epoch=1, status=status, old_due=5, due_at=6, count=count)
        yield endings.terminate, dict(epoch=1, seen=status, now=1, reason="r")
    yield endings.request_cancel, dict(epoch=1, reason="r")
    yield sweeps.advance_sweep_mark, dict(shard_no=3, mark="m", now=1)
    for join in (False, True):
        for new_window in (False, True):
            yield (
                flow.acquire,
                dict(
                    task_queue="q",
                    run_id="r",
                    token="k",
                    now=9,
                    period_ms=5,
                    new_window=new_window,
                    join=join,
                ),
            )
    for last in (False, True):
        yield flow.release, dict(task_queue="q", run_id="r", token="k", last=last)
    yield flow.purge, dict(task_queue="q", stale={"r1": {"k": 1}, "r2": "1:w", "r3": 2})
    yield flow.note_waiting, dict(task_queue="q", run_id="r", since=1)
    yield flow.clear_waiting, dict(task_queue="q", run_id="r")
    for limit in (None, 3):
        for rate in (None, 10):
            yield (
                flow.set_limits,
                dict(
                    task_queue="q",
                    max_concurrency=limit,
                    rate_limit=rate,
                    rate_period_ms=None if rate is None else 1000,
                    now=1,
                ),
            )
    cb = StepRecord("2", "cb", StepKind.CALLBACK, 1, 1, callback_id="tok", wake_at=99, started_at=1)
    yield callbacks.create, dict(rec=cb, heartbeat_ms=0)
    yield callbacks.create, dict(rec=cb, heartbeat_ms=500)
    yield callbacks.create, dict(rec=replace(cb, run_attempt=1), heartbeat_ms=0)
    yield callbacks.complete, dict(token="tok", now=1, completion_id="c")
    yield callbacks.heartbeat, dict(token="tok", now=1)
    yield callbacks.close, dict(token="tok", now=1)
    yield (
        generations.continue_run,
        dict(epoch=1, now=1, lease_until=2, input_text="{}", generation=1),
    )


def _bound(builder: Callable[..., Any]) -> Callable[..., Any]:
    params = list(inspect.signature(builder).parameters)
    if params[:2] == ["table", "workflow_id"]:
        return lambda **kw: builder(T, WID, **kw)
    if params[:2] == ["table", "child_id"]:
        return lambda **kw: builder(T, "child", **kw)
    return lambda **kw: builder(T, **kw)


CASES = list(_cases())


@pytest.mark.parametrize(
    ("builder", "kwargs"),
    CASES,
    ids=[f"{b.__module__.rsplit('.', 1)[1]}.{b.__name__}" for b, _ in CASES],
)
def test_each_request_builder_binds_exactly_what_it_uses(
    builder: Callable[..., Any], kwargs: dict[str, Any]
) -> None:
    try:
        req = _bound(builder)(**kwargs)
    except (AssertionError, ValueError):
        pytest.fail(f"{builder.__name__}{kwargs} refused its inputs")
    assert placeholder_problems(req) == [], kwargs


WALKED: tuple[ModuleType, ...] = (q, rq, sweeps, endings, generations, flow, callbacks)


def test_the_walk_covers_every_request_builder_of_the_run_and_record_modules() -> None:
    """A new builder in these modules joins the walk above (or this fails)."""
    covered = {b for b, _ in CASES} | {q.claim}
    # Builders whose expressions are fixed text around their callers' input:
    # put_new_run has one condition; terminal_write is walked through finish,
    # the sweeper's failures, cancel and terminate.
    fixed = {q.put_new_run, q.terminal_write, generations.expire_items, callbacks.get_lookup}
    for module in WALKED:
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or name.startswith("_"):
                continue
            if list(inspect.signature(fn).parameters)[:1] != ["table"]:
                continue
            assert fn in covered | fixed, f"{module.__name__}.{name} is not walked"
