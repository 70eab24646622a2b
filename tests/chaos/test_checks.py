"""The campaign's invariant checks catch what they claim to catch: a clean
synthetic outcome passes, and each planted violation is reported by its check.

The synthetic journals are made by the fault layer's own journal from the real
requests (orchestrator/store/requests.py), so a reworded request that the
journal no longer understands fails here, not silently in the campaign."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator import resources as r
from orchestrator.model import ClaimFailure, Run, Status, StepKind, StepRecord
from orchestrator.payloads import pointer_of
from orchestrator.store import endings, generations, sweeps
from orchestrator.store import record_requests as rq
from orchestrator.store import requests as q
from orchestrator.store.codec import last_batch_text, run_pk, step_sk, to_item
from orchestrator.testing_faults.journal import _journal_entry
from tests.chaos.campaign import Config, Outcome, Planned
from tests.chaos.checks import CHECKS, check

RID = "chaos-1-0000-steps"
PK = run_pk(RID)
TABLE = "t"
# The clean run's output is offloaded (as a value above the threshold would be):
# its record holds the pointer, the bucket the object.
OUTPUT = b"[0,1]"
POINTER, KEY = pointer_of(OUTPUT)


def _journaled(request: dict[str, Any], t0: int, t1: int, answer: Any = None) -> dict[str, Any]:
    op = "dynamodb.PutItem" if "Item" in request else "dynamodb.UpdateItem"
    return {**_journal_entry(op, request, answer or {}), "t0": t0, "t1": t1}


def _finish(epoch: int, t0: int, t1: int) -> dict[str, Any]:
    req = q.finish(TABLE, RID, epoch=epoch, now=t0, status=Status.COMPLETED, output=POINTER)
    return _journaled(req, t0, t1)


def _stored(t0: int, t1: int) -> dict[str, Any]:
    """An S3 PutObject of the output's object, as the journal records it."""
    url = f"http://127.0.0.1:1/bucket/{KEY}"
    entry = _journal_entry("s3.PutObject", {"url": url, "bytes": len(OUTPUT)}, {})
    return {**entry, "t0": t0, "t1": t1}


def _clean() -> Outcome:
    plan = [Planned(RID, "steps", "chaos.steps", {"n": 2, "pause": 0}, 0.0, "completed", [0, 1])]
    run = Run(
        id=RID,
        name="chaos.steps",
        status=Status.COMPLETED,
        input="{}",
        created_at=1000,
        updated_at=1300,
        epoch=2,
        output=POINTER,
    )
    history = [
        StepRecord("0", "s0", StepKind.STEP, 1, 1100, result="0", resolved=True),
        StepRecord("1", "s1", StepKind.STEP, 2, 1250, result="1", resolved=True),
    ]
    executions = [
        {"run": RID, "step": "s0", "epoch": 1, "pid": 1, "t": 1090},
        {"run": RID, "step": "s1", "epoch": 1, "pid": 1, "t": 1150},  # killed before its put
        {"run": RID, "step": "s1", "epoch": 2, "pid": 2, "t": 1240},
    ]
    journal = [
        _journaled(q.put_new_run(TABLE, to_item({"pk": PK, "sk": "RUN"})), 1000, 1005),
        _claim(1, 1010, 1015),
        _step(0, 1, 1100, 1101, 1105),
        _claim(2, 1200, 1205),
        _step(1, 2, 1250, 1251, 1255),
        _stored(1290, 1295),
        _finish(2, 1300, 1305),
    ]
    return Outcome(
        cfg=Config(),
        plan=plan,
        runs={RID: run},
        histories={RID: history},
        executions=executions,
        journal=journal,
        fault_log=[],
        kills=1,
        pauses=0,
        withheld=0,
        worker_processes=2,
        api_errors=Counter(),
        seconds=1.0,
        settled=True,
        workdir=Path("."),
        pointers=[(f"{PK} RUN output", POINTER)],
        objects={KEY: OUTPUT},
    )


def _claim(epoch: int, t0: int, t1: int) -> dict[str, Any]:
    req = q.claim(TABLE, RID, owner=f"w{epoch}", now=t0, lease_ms=3000, names=["chaos.steps"])
    return _journaled(req, t0, t1, {"Attributes": to_item({"epoch": epoch, "status": "running"})})


def _step(
    pos: int | str, epoch: int, recorded: int, t0: int, t1: int, attempt: int = 0
) -> dict[str, Any]:
    # A resolved step record as the worker puts it (first write wins); `pos` may be
    # an operation id of a later generation ("~1.0"); `attempt` its run attempt.
    item = {"pk": PK, "sk": step_sk(str(pos)), "epoch": epoch, "recorded_at": recorded}
    if attempt:
        item["run_attempt"] = attempt
    req = {
        "TableName": TABLE,
        "Item": {**to_item(item), "resolved": {"BOOL": True}},
        "ConditionExpression": "attribute_not_exists(#sk) OR attribute_not_exists(#res)",
        "ExpressionAttributeNames": {"#sk": "sk", "#res": "resolved"},
    }
    return _journaled(req, t0, t1)


def test_a_clean_outcome_has_no_violation() -> None:
    report = check(_clean())
    assert report.total_violations == 0, report.violations
    assert report.facts["executions per step record"] == {1: 1, 2: 1}
    assert report.facts["value pointers in records (distinct objects)"] == "1 (1)"
    assert report.facts["journaled writes carrying a pointer"] == 1


def _failed(o: Outcome) -> None:
    o.runs[RID] = Run(RID, "chaos.steps", Status.FAILED, "{}", 1000, 1300, epoch=2)


def _recorded_twice(o: Outcome) -> None:
    o.histories[RID].append(
        StepRecord("2", "s1", StepKind.STEP, 2, 1260, result="1", resolved=True)
    )


def _resolved_twice(o: Outcome) -> None:
    o.journal.append(_step(1, 1, 1270, 1271, 1275))


def _ran_after_recorded(o: Outcome) -> None:
    o.executions.append({"run": RID, "step": "s0", "epoch": 2, "pid": 2, "t": 1210})


def _ran_after_its_batch(o: Outcome) -> None:
    # s0 recorded in a batch item (a flush), not alone; then run again.
    rec = o.histories[RID][0]
    flush = rq.put_batch(TABLE, RID, epoch=1, now=1100, records=[rec])
    entry = _journal_entry("dynamodb.TransactWriteItems", flush, {})
    o.journal[2] = {**entry, "t0": 1101, "t1": 1105}  # in place of its single record
    o.executions.append({"run": RID, "step": "s0", "epoch": 2, "pid": 2, "t": 1210})


def _ran_after_the_end_carried_it(o: Outcome) -> None:
    # s1 carried by the finish (the run item's last batch), not written alone.
    rec = o.histories[RID][1]
    text = last_batch_text([rec], epoch=2, generation=0, now=1300)
    req = q.finish(
        TABLE, RID, epoch=2, now=1300, status=Status.COMPLETED, output=POINTER, last_batch=text
    )
    o.journal[6] = _journaled(req, 1300, 1305)  # the finish, carrying s1
    del o.journal[4]  # s1's single record
    o.executions.append({"run": RID, "step": "s1", "epoch": 3, "pid": 3, "t": 1320})


def _fenced_run_write(o: Outcome) -> None:
    # epoch 1's owner releases the run after epoch 2 claimed it (the condition is gone)
    o.journal.append(_journaled(q.release(TABLE, RID, epoch=1, due_at=1220), 1220, 1225))


def _fenced_step_write(o: Outcome) -> None:
    # epoch 1 records s1 after epoch 2's claim was acknowledged (recorded_at says so)
    o.journal[4] = _step(1, 1, 1230, 1231, 1235)


def _after_the_end(o: Outcome) -> None:
    o.journal.append(_step(2, 2, 1400, 1401, 1405))


def _never_executed(o: Outcome) -> None:
    o.executions = [x for x in o.executions if x["step"] != "s0"]


def _at_most_once_ran_twice(o: Outcome) -> None:
    # An at-most-once step with one recorded attempt whose function ran twice.
    o.plan[0].shape = "once"
    attempt = {"attempt": 1, "started_at": 1200, "finished_at": 1245}
    o.histories[RID][1] = replace(o.histories[RID][1], name="charge", attempts=[attempt])
    for x in o.executions:
        if x["step"] == "s1":
            x["step"] = "charge"


def _journal_understands_nothing(o: Outcome) -> None:
    # As if the requests were reworded past what the journal reads: no claim seen.
    for e in o.journal:
        e["claim"] = False


def _object_deleted(o: Outcome) -> None:
    # The object behind the output's pointer is gone (a dangling pointer).
    del o.objects[KEY]


def _object_altered(o: Outcome) -> None:
    o.objects[KEY] = b"[0,2]"  # same length, other bytes: the digest does not match


def _object_cut(o: Outcome) -> None:
    o.objects[KEY] = OUTPUT[:-1]


def _large_run_not_offloaded(o: Outcome) -> None:
    # A large-value run whose step values stayed inline: its pointers were never
    # written, so checking them would pass without looking at anything.
    o.plan[0].shape = "large"


def _pointer_before_its_object(o: Outcome) -> None:
    # The finish that carries the pointer was sent before the object was stored.
    o.journal = [e for e in o.journal if e.get("op") != "s3.PutObject"] + [_stored(1303, 1310)]


def _object_never_stored(o: Outcome) -> None:
    o.journal = [e for e in o.journal if e.get("op") != "s3.PutObject"]


def _journal_sees_no_pointer(o: Outcome) -> None:
    # Pointers in the records, and the journal recognised none in the writes.
    for e in o.journal:
        e.pop("pointers", None)


@pytest.mark.parametrize(
    ("plant", "which"),
    [
        (_failed, 0),
        (_recorded_twice, 1),
        (_resolved_twice, 2),
        (_ran_after_recorded, 3),
        (_ran_after_its_batch, 3),
        (_ran_after_the_end_carried_it, 3),
        (_fenced_run_write, 4),
        (_fenced_step_write, 5),
        (_after_the_end, 6),
        (_never_executed, 7),
        (_journal_understands_nothing, 8),
        (_object_deleted, 9),
        (_object_altered, 9),
        (_object_cut, 9),
        (_large_run_not_offloaded, 9),
        (_pointer_before_its_object, 10),
        (_object_never_stored, 10),
        (_journal_sees_no_pointer, 10),
        (_at_most_once_ran_twice, 11),
    ],
)
def test_each_check_reports_its_planted_violation(
    plant: Callable[[Outcome], None], which: int
) -> None:
    o = copy.deepcopy(_clean())
    plant(o)
    report = check(o)
    assert report.violations[CHECKS[which]], f"{CHECKS[which]} missed it: {report.violations}"


def test_a_fenced_off_owners_step_record_that_everyone_replays_is_harmless() -> None:
    # epoch 1's put of s1 was checked in time but landed after epoch 2's claim: it
    # was first at its position, so epoch 2's own put lost to it and both replay it.
    o = copy.deepcopy(_clean())
    o.journal[4] = _step(1, 1, 1230, 1231, 1235)
    o.histories[RID][1] = StepRecord("1", "s1", StepKind.STEP, 1, 1230, result="1", resolved=True)
    o.executions[2]["t"] = 1220  # epoch 2 ran s1 before the late put landed; its own put lost
    report = check(o)
    assert report.total_violations == 0, report.violations
    assert report.facts["step records by a fenced-off owner (checked harmless)"] == 1


def test_a_late_record_of_an_earlier_run_attempt_is_harmless_only_while_nobody_replays_it() -> None:
    # A redriven run (attempt 1): the old attempt's owner put s1 late. Readers leave
    # it out and the history holds attempt 1's record: harmless.
    o = copy.deepcopy(_clean())
    o.runs[RID] = replace(o.runs[RID], redrive_count=1)
    o.histories[RID] = [replace(rec, run_attempt=1) for rec in o.histories[RID]]
    o.journal[2] = _step(0, 1, 1100, 1101, 1105, attempt=1)
    o.journal[4] = _step(1, 2, 1250, 1251, 1255, attempt=1)
    o.journal.append(_step(1, 1, 1230, 1231, 1235))  # attempt 0's owner, late
    assert check(o).total_violations == 0
    # The same record replayed (a reader that forgot the attempt): reported.
    o.histories[RID][1] = StepRecord("1", "s1", StepKind.STEP, 1, 1230, result="1", resolved=True)
    assert check(o).violations[CHECKS[5]]


def test_the_journal_reads_what_each_request_means_whatever_its_wording() -> None:
    """Claims, epoch conditions and terminal statuses come from the requests'
    meaning: placeholder names and wording do not matter."""
    now = 1000
    cases = [
        (q.claim(TABLE, RID, owner="w", now=now, lease_ms=1, names=["n"]), (True, None, "running")),
        (q.heartbeat(TABLE, RID, epoch=3, lease_until=now), (False, 3, None)),
        (q.release(TABLE, RID, epoch=4, due_at=now), (False, 4, None)),
        (q.finish(TABLE, RID, epoch=5, now=now, status=Status.FAILED), (False, 5, "failed")),
        (endings.request_cancel(TABLE, RID, epoch=6, reason="r"), (False, 6, None)),
        (
            endings.cancel_parked(TABLE, RID, epoch=7, seen=Status.WAITING, now=now, reason="r"),
            (False, 7, "cancelled"),
        ),
        (
            sweeps.rearm(TABLE, RID, epoch=8, status=Status.SLEEPING, old_due=1, due_at=2),
            (False, 8, None),
        ),
        (
            q.record_claim_failure(
                TABLE,
                RID,
                epoch=10,
                now=now,
                failure=ClaimFailure("ValueUnavailableError", "gone", 1),
                retry_at=now + 1000,
                due_at=now + 2000,
            ),
            (False, 10, None),
        ),
    ]
    for req, want in cases:
        e = _journal_entry("dynamodb.UpdateItem", req, {})
        assert (e["claim"], e["epoch_cond"], e["sets_status"]) == want, req
        assert e["record"] == "run"
    # The same meaning in other words: renamed placeholders, ADD instead of SET.
    reworded = {
        "Key": to_item({"pk": PK, "sk": "RUN"}),
        "UpdateExpression": "ADD #fence :inc SET #state = :s",
        "ConditionExpression": "(#state = :p) AND attribute_exists(#key)",
        "ExpressionAttributeNames": {"#fence": "epoch", "#state": "status", "#key": "pk"},
        "ExpressionAttributeValues": to_item({":inc": 1, ":s": "running", ":p": "pending"}),
    }
    e = _journal_entry("dynamodb.UpdateItem", reworded, {})
    assert (e["claim"], e["sets_status"]) == (True, "running")
    fenced = {
        "Key": to_item({"pk": PK, "sk": "RUN"}),
        "UpdateExpression": "SET lease_until = :until",
        "ConditionExpression": ":mine = epoch AND (#s = :r)",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": to_item({":mine": 9, ":until": 1, ":r": "running"}),
    }
    assert _journal_entry("dynamodb.UpdateItem", fenced, {})["epoch_cond"] == 9


def _delivered(t0: int, t1: int) -> dict[str, Any]:
    """The transaction that tells a parent its child (RID) ended, as journaled."""
    req = endings.notify_parent(
        TABLE,
        RID,
        parent_id="parent",
        signal=None,
        prev_seq=0,
        seen_status=Status.WAITING,
        epoch=1,
        now=t0,
        wake=False,
        due_at=0,
    )
    entry = _journal_entry("dynamodb.TransactWriteItems", req, {})
    return {**entry, "t0": t0, "t1": t1}


def test_the_delivery_of_a_childs_end_after_its_terminal_write_is_allowed() -> None:
    """A child's end reaches its parent after the child's terminal write by
    design: that write sets `parent_notified` and leaves the sweeper's index."""
    o = copy.deepcopy(_clean())
    o.journal.append(_delivered(1400, 1405))
    assert check(o).total_violations == 0


def test_a_write_after_the_end_that_also_changes_state_is_reported() -> None:
    o = copy.deepcopy(_clean())
    entry = _delivered(1400, 1405)
    entry["items"][0]["touches"] = ["parent_notified", "status"]
    o.journal.append(entry)
    assert check(o).violations[CHECKS[6]]


def test_the_ttl_of_a_signal_left_unconsumed_after_the_end_is_allowed() -> None:
    """Whoever ends a run gives each signal it left unconsumed a TTL, after the
    terminal write by design; any other write to the signal then is reported."""
    from orchestrator.store import record_requests as rq

    o = copy.deepcopy(_clean())
    o.journal.append(
        _journaled(rq.expire_signal(TABLE, RID, "SIG#go#000000000001", expires_at=9), 1400, 1405)
    )
    assert check(o).total_violations == 0
    o = copy.deepcopy(_clean())
    wrong = rq.expire_signal(TABLE, RID, "SIG#go#000000000001", expires_at=9)
    wrong["UpdateExpression"] = "SET #ttl = :ttl, payload = :ttl"
    o.journal.append(_journaled(wrong, 1400, 1405))
    assert check(o).violations[CHECKS[6]]


def _generations() -> Outcome:
    """The clean run as a continue-as-new run of two generations, each a step
    and a sleep: generation 1's ids are "~1.0" and "~1.1"; the continue (epoch 1
    to 2, a claim to the journal) comes between them."""
    o = copy.deepcopy(_clean())
    p = o.plan[0]
    p.shape, p.name = "generations", "chaos.generations"
    p.input = {"gen": 0, "of": 2, "acc": [], "sleep": 0.5}
    o.runs[RID] = Run(RID, p.name, Status.COMPLETED, "{}", 1000, 1300, epoch=2, output=POINTER)
    o.histories[RID] = [
        StepRecord("0", "g0", StepKind.STEP, 1, 1100, result="0", resolved=True),
        StepRecord("1", "nap0", StepKind.SLEEP, 1, 1106, wake_at=1150, resolved=True),
        StepRecord("~1.0", "g1", StepKind.STEP, 2, 1250, result="1", resolved=True),
        StepRecord("~1.1", "nap1", StepKind.SLEEP, 2, 1256, wake_at=1290, resolved=True),
    ]
    for x in o.executions:
        x["step"] = {"s0": "g0", "s1": "g1"}[x["step"]]
    nxt = generations.continue_run(
        TABLE, RID, epoch=1, now=1200, lease_until=4200, input_text="{}", generation=1
    )
    answer = {"Attributes": to_item({"epoch": 2, "status": "running"})}
    o.journal[3] = _journaled(nxt, 1200, 1205, answer)  # in place of the second claim
    o.journal[4] = _step("~1.0", 2, 1250, 1251, 1255)
    return o


def test_a_clean_continue_as_new_outcome_has_no_violation() -> None:
    report = check(_generations())
    assert report.total_violations == 0, report.violations
    assert report.facts["claims"] == 2  # the claim and the continue (the epoch moved on)


def _generation_missing(o: Outcome) -> None:
    del o.histories[RID][2:]  # generation 1 left nothing: a completed run skipped it


def _generation_gap(o: Outcome) -> None:
    o.histories[RID][3] = replace(o.histories[RID][3], op_id="~1.2")


def _write_of_the_ended_generation(o: Outcome) -> None:
    # the owner of epoch 1 heartbeats after its continue moved the epoch on
    o.journal.append(_journaled(q.heartbeat(TABLE, RID, epoch=1, lease_until=4300), 1220, 1224))


@pytest.mark.parametrize(
    ("plant", "which"),
    [(_generation_missing, 1), (_generation_gap, 1), (_write_of_the_ended_generation, 4)],
)
def test_each_check_reports_a_planted_violation_in_a_continued_run(
    plant: Callable[[Outcome], None], which: int
) -> None:
    o = _generations()
    plant(o)
    assert check(o).violations[CHECKS[which]], check(o).violations


def test_the_ttl_rewrite_of_an_ended_generation_resolves_nothing_again() -> None:
    """Continue-as-new puts the ended generation's records back as read, with the
    TTL (orchestrator/store/generations.py): not a second resolution. The same put
    without the TTL is one."""
    o = _generations()
    # s0 as its owner put it (`_step`), read back and put again with the TTL.
    item = to_item({"pk": PK, "sk": step_sk("0"), "epoch": 1, "recorded_at": 1100})
    puts = generations.expire_items(TABLE, [{**item, "resolved": {"BOOL": True}}], now=1210)
    o.journal.append(_journaled(puts[0], 1210, 1212))
    assert check(o).total_violations == 0, check(o).violations
    plain = {**puts[0], "Item": {k: v for k, v in puts[0]["Item"].items() if k != r.TTL_ATTRIBUTE}}
    o.journal.append(_journaled(plain, 1213, 1215))
    assert check(o).violations[CHECKS[2]], check(o).violations
