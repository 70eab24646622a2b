"""The invariant checks of the chaos campaign (tests/chaos/campaign.py).

`check(outcome)` reads what a finished campaign left behind: the stored runs
and step histories, the large-value pointers in every record and the value
bucket's objects, the step functions' execution log and the fault layer's
write journal (orchestrator/testing_faults/journal.py). It returns a `Report`: the
violations found under each name in `CHECKS`, and facts about the campaign.
It reads only the outcome (no AWS, no processes), so tests/chaos/test_checks.py
plants violations in synthetic outcomes. docs/reliability.md says what each
check proves and what it does not.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator import resources as r
from orchestrator.model import TERMINAL, StepKind, StepRecord, op_parent, op_sort_key
from orchestrator.payloads import is_pointer, object_key, parse_pointer
from orchestrator.store.codec import run_pk, step_sk

if TYPE_CHECKING:
    from .campaign import Outcome, Planned


def expected_history(p: Planned) -> list[tuple[str, str]]:
    """The (kind, name) sequence a run of this shape records, in position order."""
    if p.shape in ("steps", "child"):
        return [("step", f"s{i}") for i in range(p.input["n"])]
    if p.shape == "sleepy":
        return [("step", "a"), ("sleep", "nap"), ("step", "b")]
    if p.shape in ("signal", "signal_timeout"):
        return [("step", "a"), ("wait", "w"), ("step", "b")]
    if p.shape in ("callback", "callback_timeout"):
        return [("step", "a"), ("callback", "cb"), ("step", "b")]
    if p.shape == "retry":
        return [("step", "flaky")]
    if p.shape == "exhaust":
        return [("step", "doomed")]
    if p.shape == "once":
        return [("step", "a"), ("step", "charge")]
    if p.shape == "crash":
        return [("step", "a")]
    if p.shape == "gather":  # in id order: the sleep at 0, then task scopes t0 and t1
        return [("sleep", "nap"), ("step", "a0"), ("step", "a1"), ("step", "b0"), ("step", "b1")]
    if p.shape == "batch":  # the batch at 0, its branches 0.i.0, the sleep at 1, a step at 2
        return (
            [("parallel", "fan")]
            + [("step", f"p{i}") for i in range(3)]
            + [
                ("sleep", "nap"),
                ("step", "after"),
            ]
        )
    if p.shape == "invoke":
        return [("invoke", "child")]
    if p.shape == "distributed":  # the map's items are child runs, planned on their own
        return [("map", "fan"), ("sleep", "nap"), ("step", "after")]
    if p.shape == "s3map":  # the batches are child runs, planned on their own
        return [("step", "upload"), ("map", "fan"), ("sleep", "nap")]
    if p.shape == "s3batch":
        return [("step", "sum")]
    if p.shape == "large":
        return [("step", "v0"), ("step", "v1"), ("sleep", "nap"), ("step", "v2")]
    if p.shape == "generations":  # every generation's records (campaign reads them all)
        return [h for g in range(p.input["of"]) for h in (("step", f"g{g}"), ("sleep", f"nap{g}"))]
    return [("step", "a"), ("step", "slow"), ("sleep", "long")]


def _object(o: Outcome, pointer: str) -> bytes | None:
    """The bytes a pointer names, if the bucket holds them (its object exists,
    and matches its digest and length), else None."""
    digest, size = parse_pointer(pointer)
    data = o.objects.get(object_key(digest))
    if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        return None
    return data


def _value(o: Outcome, text: str | None) -> str | None:
    """The JSON text a stored text stands for: a pointer read from the bucket's
    objects (None if they do not hold it: the pointer check reports why)."""
    if not is_pointer(text):
        return text
    assert text is not None
    data = _object(o, text)
    return None if data is None else data.decode()


def _outputs(p: Planned) -> list[Any]:
    """The outputs a completed run of this plan may have. A callback completed
    around its timeout may end either way, unless the API accepted a completion
    (202): then the workflow must have got it."""
    if p.shape == "callback_timeout" and not p.accepted:
        return [p.output, "timed out"]
    return [p.output]


@dataclass
class Report:
    violations: dict[str, list[str]]
    facts: dict[str, Any]

    @property
    def total_violations(self) -> int:
        return sum(len(v) for v in self.violations.values())


CHECKS = (
    "terminal state as expected",
    "history as expected (no step recorded twice)",
    "no outcome resolved twice",
    "no step ran again after its outcome was recorded",
    "no run-state write by a fenced-off owner",
    "a fenced-off owner's step record is harmless (first at its position, replayed as recorded)",
    "nothing written after the terminal write",
    "every recorded step executed at least once",
    "the journal shows claims and epoch-conditioned run writes (the fencing checks ran)",
    "every value pointer names a stored object that matches it",
    "no record pointed at a value before its object was stored",
    "an at-most-once step ran at most once per attempt it recorded",
)

TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)

# The journal says what each write means (orchestrator/testing_faults/journal.py):
# which record, whether it is a claim (the epoch incremented), the epoch its
# condition requires, the status it sets. The checks read those facts, never the
# expression text, so rewording a request cannot make a check pass unchecked.


def _stale_record_harm(
    w: dict[str, Any], final: StepRecord | None, run_attempt: int | None
) -> str | None:
    """Why a step record that a fenced-off owner put could do harm, or None.

    Harmless when it belongs to the run's attempt and every reader replays it as
    recorded: it was the first write at its position (the put's condition found
    it free), so the new owner's own put lost to it and used it, as any later
    claim does (both owners ran the same code on the same history). Harmless too
    when it belongs to an earlier run attempt (a redriven run's old owner) and no
    reader replays it. Harm is a record replayed although of an earlier attempt,
    or a resolved record that the history no longer holds: two owners then saw
    two outcomes at one position."""
    mine = w.get("item_attempt") or 0
    if final is not None and final.run_attempt < (run_attempt or 0):
        return f"the history replays a record of run attempt {final.run_attempt}"
    if mine < (run_attempt or 0):
        return None  # an earlier attempt's record: readers leave it out
    if not w.get("resolved"):
        return None  # a retry state, a wake time or a deadline: first value holds
    if final is None:
        return "the history no longer holds it"
    if (final.epoch, final.recorded_at) != (w.get("item_epoch"), w.get("recorded_at")):
        return f"the history holds another record there (epoch {final.epoch})"
    return None


def _is_claim(e: dict[str, Any]) -> bool:
    return e.get("op") == "dynamodb.UpdateItem" and bool(e.get("claim"))


def _is_run_key(e: dict[str, Any]) -> bool:
    return e.get("record") == "run"


def _is_step_key(e: dict[str, Any]) -> bool:
    return e.get("record") == "step"


# What the delivery of a child's end to its parent may write on the ended child.
_DELIVERY = frozenset({"parent_notified", r.BY_DUE.partition_key, r.BY_DUE.sort_key})


def _delivers_end(w: dict[str, Any]) -> bool:
    touches = w.get("touches")
    return (
        _is_run_key(w)
        and bool(touches)
        and "parent_notified" in touches
        and (set(touches) <= _DELIVERY)
    )


def _expires_leftover(w: dict[str, Any]) -> bool:
    """The other effect after a run's end: a signal it left unconsumed given its
    TTL (`record_requests.expire_signal`), and nothing else."""
    return w.get("record") == "signal" and w.get("touches") == [r.TTL_ATTRIBUTE]


def check(o: Outcome) -> Report:
    v: dict[str, list[str]] = {c: [] for c in CHECKS}
    facts: dict[str, Any] = {}

    # 1. every run reached the terminal state it should (and with the right result)
    for p in o.plan:
        run = o.runs.get(p.id)
        if run is None:
            v[CHECKS[0]].append(f"{p.id}: no run record")
            continue
        status = run.status.value
        output = _value(o, run.output)  # an offloaded output read from its object
        if status != p.status:
            err = f" ({run.error.type}: {run.error.message[:120]})" if run.error else ""
            if not run.status.terminal:
                err = (
                    f" (epoch {run.epoch}, owner {run.owner}, lease_until {run.lease_until}, "
                    f"due_at {run.due_at}, wake_at {run.wake_at}, updated_at {run.updated_at})"
                )
            v[CHECKS[0]].append(f"{p.id}: {status}{err}, expected {p.status}")
        elif status == "completed" and json.loads(output or "null") not in _outputs(p):
            got = (output or f"{run.output} (no matching object)")[:200]
            v[CHECKS[0]].append(f"{p.id}: output {got!r}, expected {str(_outputs(p))[:200]!r}")
        elif status == "failed" and (run.error is None or run.error.type != p.error_type):
            got = run.error.type if run.error else None
            v[CHECKS[0]].append(f"{p.id}: failed with {got}, expected {p.error_type}")

    # 2. the history is the shape's, each durable call at one position
    for p in o.plan:
        hist = sorted(o.histories.get(p.id, []), key=lambda s: op_sort_key(s.op_id))
        got = [(s.kind.value, s.name) for s in hist]
        # Root ids count from 0 in each continue-as-new generation ("0", "1", ...;
        # "~g.0", "~g.1", ... for generation g > 0).
        by_gen: dict[str, list[str]] = defaultdict(list)
        for s in hist:
            scope, index = op_parent(s.op_id) or "", s.op_id.rpartition(".")[2]
            if index.isdigit() and (scope == "" or (scope[:1] == "~" and scope[1:].isdigit())):
                by_gen[scope].append(index)
        for ids in by_gen.values():
            if ids != [str(i) for i in range(len(ids))]:
                v[CHECKS[1]].append(f"{p.id}: operation ids {[s.op_id for s in hist]} have gaps")
        want = expected_history(p)
        if p.status == "cancelled":
            k = next((i for i, (kind, _) in enumerate(got) if kind == "cancel"), len(got))
            ok = got[:k] == want[:k] and got[k:] in ([], [("cancel", "cancel"), ("step", "undo")])
        elif o.runs.get(p.id) is not None and o.runs[p.id].status.value == p.status:  # type: ignore[union-attr]
            ok = got == want
        else:
            ok = got == want[: len(got)]
        if not ok:
            v[CHECKS[1]].append(f"{p.id}: history {got}, expected {want}")
        names = Counter((k, n) for k, n in got)
        for (kind, name), n in names.items():
            if n > 1:
                v[CHECKS[1]].append(f"{p.id}: {kind} {name!r} recorded {n} times")

    # Journal: applied DynamoDB writes with their send/answer times.
    claims: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # pk -> (epoch, t0, t1)
    writes: list[dict[str, Any]] = []
    refused = [e for e in o.journal if e.get("refused")]
    for e in o.journal:
        if e.get("refused"):
            continue
        if e.get("op") == "dynamodb.TransactWriteItems":
            for item in e.get("items", []):
                writes.append(
                    {
                        **item,
                        "op": f"transact.{item.get('kind')}",
                        "t0": e.get("t0"),
                        "t1": e.get("t1"),
                    }
                )
            continue
        if _is_claim(e) and e.get("new_epoch") is not None:
            claims[e["pk"]].append((e["new_epoch"], e["t0"] or 0, e["t1"]))
        writes.append(e)
    facts["claims"] = sum(len(c) for c in claims.values())
    facts["journaled writes"] = len(writes)

    def newer_claim_before(pk: str, epoch: int, t: int) -> tuple[int, int] | None:
        """A claim of an epoch above `epoch` that was acknowledged before time t."""
        for e, _c0, c1 in claims.get(pk, []):
            if e > epoch and c1 < t:
                return e, c1
        return None

    # 3. no outcome resolved twice (first write wins) within one run attempt (a
    # redriven run's new attempt replaces what an earlier one left)
    resolving: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for w in writes:
        # A TTL rewrite of an ended generation puts a record back as it was read.
        if _is_step_key(w) and w.get("resolved") and not w.get("expires"):
            resolving[(w["pk"], w["sk"])].append(w)
    for (pk, sk), ws in resolving.items():
        per_attempt = Counter(w.get("item_attempt") or 0 for w in ws)
        for attempt, n in per_attempt.items():
            if n > 1:
                v[CHECKS[2]].append(f"{pk} {sk}: {n} writes resolved it in run attempt {attempt}")

    # 4. no step function started after its outcome was durably recorded (alone,
    # in a batch item, or on the run item's last batch: acknowledged writes only)
    batched: dict[tuple[str, str], list[int]] = defaultdict(list)
    for w in writes:
        if w.get("t1") and not w.get("refused"):
            for op in w.get("batched_ops") or ():
                batched[(w["pk"], op)].append(w["t1"])
    execs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for x in o.executions:
        execs[(x["run"], x["step"])].append(x)
    for p in o.plan:
        for s in o.histories.get(p.id, []):
            if s.kind != StepKind.STEP or not s.resolved:
                continue
            pk, sk = run_pk(p.id), step_sk(s.op_id)
            acks = [
                w["t1"]
                for w in resolving.get((pk, sk), [])
                if w.get("t1") and (w.get("item_attempt") or 0) == s.run_attempt
            ]
            acks += batched.get((pk, s.op_id), [])
            done = min(acks) if acks else None
            for x in execs.get((p.id, s.name), []):
                if done is not None and x["t"] > done:
                    v[CHECKS[3]].append(
                        f"{p.id} {s.name!r}: ran at {x['t']} (epoch {x['epoch']}), "
                        f"{x['t'] - done} ms after its outcome was recorded (epoch {s.epoch})"
                    )

    # 5/6. writes by a fenced-off owner: sent after a newer claim was acknowledged
    final_records = {
        (run_pk(pid), step_sk(s.op_id)): s for pid, recs in o.histories.items() for s in recs
    }
    attempts = {run_pk(pid): run.redrive_count for pid, run in o.runs.items() if run is not None}
    fenced_steps = 0
    for w in writes:
        pk = w.get("pk")
        if not pk or w.get("t0") is None:
            continue
        if _is_run_key(w) and w.get("epoch_cond") is not None and not _is_claim(w):
            hit = newer_claim_before(pk, w["epoch_cond"], w["t0"])
            if hit:
                v[CHECKS[4]].append(
                    f"{pk}: {w.get('update')!r} conditioned on epoch {w['epoch_cond']} applied, "
                    f"sent {w['t0'] - hit[1]} ms after epoch {hit[0]} claimed the run"
                )
        elif _is_step_key(w) and w.get("item_epoch") is not None:
            # From stored data alone: recorded_at is stamped before the put is sent.
            sent = max(w["t0"], w.get("recorded_at") or 0)
            hit = newer_claim_before(pk, w["item_epoch"], sent)
            if hit and w.get("op") == "dynamodb.PutItem":
                # A request checked against the lease in time can land after a
                # takeover (docs/architecture.md: no guarantee rests on that
                # check). It is harmless when it is what every owner replays.
                fenced_steps += 1
                why = _stale_record_harm(w, final_records.get((pk, w["sk"])), attempts.get(pk))
                if why:
                    v[CHECKS[5]].append(
                        f"{pk} {w['sk']}: recorded by epoch {w['item_epoch']}, sent "
                        f"{sent - hit[1]} ms after epoch {hit[0]} claimed the run; {why}"
                    )
    facts["step records by a fenced-off owner (checked harmless)"] = fenced_steps
    owner_writes = sum(
        1 for w in writes if _is_run_key(w) and w.get("epoch_cond") is not None and not _is_claim(w)
    )
    facts["run writes conditioned on an epoch"] = owner_writes
    # 9. the fencing checks had something to check: a journal in which no claim or
    # no epoch condition was recognised means the journal no longer understands
    # the requests, and checks 5 and 6 would pass without looking at anything.
    if writes and (not claims or not owner_writes):
        v[CHECKS[8]].append(
            f"{len(writes)} journaled writes, {facts['claims']} claims and {owner_writes} "
            "epoch-conditioned run writes recognised"
        )
    # Fencing at work: owner writes refused because a newer epoch had claimed the run.
    stale = 0
    for w in refused:
        pk, epoch = w.get("pk"), w.get("epoch_cond")
        t0 = w.get("t0")
        if pk and epoch is not None and _is_run_key(w) and t0 is not None:
            stale += newer_claim_before(pk, epoch, t0) is not None
    facts["writes refused by conditions (all / stale owners fenced off)"] = (
        f"{len(refused)} / {stale}"
    )

    # 7. terminal is final: nothing applied to a run after its terminal write,
    # except the effects after it by design: the one write that tells a child's
    # parent of its end (it sets `parent_notified` and takes the child out of the
    # sweeper's index, and changes nothing else), and the TTL given to each signal
    # the run left unconsumed.
    for p in o.plan:
        pk = run_pk(p.id)
        ends = [
            w["t1"]
            for w in writes
            if w.get("pk") == pk and _is_run_key(w) and w.get("sets_status") in TERMINAL_VALUES
        ]
        if not ends:
            continue
        end = min(ends)
        for w in writes:
            after = w.get("pk") == pk and (w.get("t0") or 0) > end
            if after and not _delivers_end(w) and not _expires_leftover(w):
                v[CHECKS[6]].append(
                    f"{pk} {w.get('sk')}: {w.get('op')} applied after the run ended"
                )

    _check_values(o, writes, v, facts)

    # How long runs took, start write to terminal write (the slowest show the backstops).
    spans: dict[str, list[int]] = defaultdict(list)
    for w in writes:
        if _is_run_key(w) and w.get("t1"):
            spans[w["pk"]].append(w["t1"])
    slowest = sorted(((max(t) - min(t), pk[3:]) for pk, t in spans.items()), reverse=True)[:3]
    facts["slowest runs (s, start to last write)"] = [f"{d / 1000:.0f} {rid}" for d, rid in slowest]

    # 8. execution counts
    counts: Counter[int] = Counter()
    extra_runs = 0
    for p in o.plan:
        for s in o.histories.get(p.id, []):
            if s.kind != StepKind.STEP:
                continue
            n = len(execs.get((p.id, s.name), []))
            attempts = max(1, len(s.attempts))
            counts[n] += 1
            interrupted = s.error is not None and s.error.type == "StepInterruptedError"
            if n < 1 and not interrupted:  # an interrupted attempt may die before it runs
                v[CHECKS[7]].append(f"{p.id} {s.name!r}: recorded but never executed")
            if p.shape == "once" and s.name == "charge" and n > len(s.attempts):
                v[CHECKS[11]].append(
                    f"{p.id} 'charge': {n} executions, {len(s.attempts)} attempts recorded"
                )
            if s.resolved and n > attempts:
                extra_runs += n - attempts
    facts["step records (kind step)"] = sum(counts.values())
    facts["step executions"] = len(o.executions)
    facts["executions per step record"] = dict(sorted(counts.items()))
    facts["re-executions beyond recorded attempts (at-least-once)"] = extra_runs
    facts["runs by shape"] = dict(Counter(p.shape for p in o.plan))
    raced = Counter(
        (
            "completion accepted" if p.accepted else "no completion accepted",
            "got it"
            if (run := o.runs.get(p.id)) and run.output not in (None, '"timed out"')
            else "timed out",
        )
        for p in o.plan
        if p.shape == "callback_timeout"
    )
    facts["callbacks completed around their timeout"] = {
        f"{a}, {b}": n for (a, b), n in raced.items()
    }
    facts["runs by final status"] = dict(
        Counter((run.status.value if run else "missing") for run in o.runs.values())
    )
    faults_by_kind: Counter[str] = Counter(f["kind"] for f in o.fault_log)
    facts["faults injected by kind"] = dict(sorted(faults_by_kind.items()))
    s3_faults = Counter(f["kind"] for f in o.fault_log if str(f.get("op")).startswith("s3."))
    facts["faults injected on S3 (PutObject, GetObject) by kind"] = dict(sorted(s3_faults.items()))
    facts["faults injected, worker processes"] = dict(
        sorted(Counter(f["kind"] for f in o.fault_log if f.get("pid") != os.getpid()).items())
    )
    facts["duplicate deliveries"] = faults_by_kind["duplicate"] + faults_by_kind["duplicate_late"]
    facts["worker kills (SIGKILL)"] = o.kills
    facts["worker pauses (SIGSTOP past the lease, then SIGCONT)"] = o.pauses
    facts["requests withheld: the owner's lease ran out before the send"] = o.withheld
    facts["worker processes started"] = o.worker_processes
    facts["API calls retried by the driver"] = dict(o.api_errors)
    return Report(violations=v, facts=facts)


def _check_values(
    o: Outcome, writes: list[dict[str, Any]], v: dict[str, list[str]], facts: dict[str, Any]
) -> None:
    """Large values (claim check): no pointer dangles, at rest or ever."""
    # 10. Every pointer found in a record names an object whose bytes match its
    # digest and length: a dangling one would make its run unreadable.
    pointed: set[str] = set()
    for where, pointer in o.pointers:
        key = object_key(parse_pointer(pointer)[0])
        pointed.add(key)
        if key not in o.objects:
            v[CHECKS[9]].append(f"{where}: {pointer}: no object {key}")
        elif _object(o, pointer) is None:
            got = len(o.objects[key])
            v[CHECKS[9]].append(f"{where}: {pointer}: its object holds {got} other bytes")
    # Not silently: a completed run of the large shape offloaded its output and
    # each step value (all above the threshold), so its pointers were checked.
    for p in o.plan:
        run = o.runs.get(p.id)
        if p.shape != "large" or run is None or run.status.value != "completed":
            continue
        texts = {"output": run.output} | {
            f"step {s.name}": s.result for s in o.histories.get(p.id, []) if s.kind == StepKind.STEP
        }
        for what, text in texts.items():
            if not is_pointer(text):
                v[CHECKS[9]].append(f"{p.id}: {what} stored inline, not offloaded: {text!r:.60}")
    facts["value pointers in records (distinct objects)"] = f"{len(o.pointers)} ({len(pointed)})"
    facts["objects in the value bucket (pointed at by no record)"] = (
        f"{len(o.objects)} ({len(set(o.objects) - pointed)})"
    )

    # 11. The object before the pointer: each applied write that carries a pointer
    # was sent (t0) after a PutObject of its object was acknowledged (t1), by any
    # process (identical values are one object). A record that pointed at a value
    # not yet stored could be read as missing, and lost if the put never came.
    stored: dict[str, int] = {}
    for e in o.journal:
        if e.get("op") == "s3.PutObject" and e.get("t1") is not None:
            stored[e["key"]] = min(stored.get(e["key"], e["t1"]), e["t1"])
    carrying = 0
    for w in writes:
        if not w.get("pointers") or w.get("t0") is None:
            continue
        carrying += 1
        for pointer in w["pointers"]:
            key = object_key(parse_pointer(pointer)[0])
            put = stored.get(key)
            if put is None or put > w["t0"]:
                when = "never" if put is None else f"{put - w['t0']} ms after it was sent"
                v[CHECKS[10]].append(
                    f"{w.get('pk')} {w.get('sk')}: {w.get('op')} points at {key}, stored {when}"
                )
    if o.pointers and not carrying:
        v[CHECKS[10]].append(
            f"{len(o.pointers)} pointers in the records, and no journaled write carried one"
        )
    facts["objects stored (PutObject calls journaled)"] = sum(
        1 for e in o.journal if e.get("op") == "s3.PutObject"
    )
    facts["journaled writes carrying a pointer"] = carrying
