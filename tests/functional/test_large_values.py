"""Large values through the claim check (orchestrator/payloads.py): step results,
child-context and map results and workflow outputs above the offload threshold go
to S3, the records keep pointers, and replay (after a sleep, after a worker is
killed) reads them back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator import resources as r
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.model import Status
from orchestrator.payloads import is_pointer, parse_pointer
from tests.conftest import executions, worker_env
from tests.helpers import WorkerProcess, wait_for, wait_status
from tests.workflows_large import LARGE


def _objects(stack: Any) -> dict[str, int]:
    resp = stack.s3.list_objects_v2(Bucket=stack.settings.bucket, Prefix=r.VALUE_KEY_PREFIX)
    return {o["Key"]: o["Size"] for o in resp.get("Contents", [])}


def _raw_steps(stack: Any, run_id: str) -> dict[str, str | None]:
    """Each step record's stored `result` as DynamoDB holds it, by step name."""
    return {s.name: s.result for s in stack.store.steps(run_id)}


def _count(log: list[str], run_id: str, step: str) -> int:
    return sum(1 for line in log if line == f"{run_id}:{step}")


@pytest.mark.parametrize("size", [300 * 1024, 5 * 1024 * 1024])
def test_a_large_step_result_and_output_survive_a_replay(
    stack: Any, exec_log: Path, size: int
) -> None:
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("large.value", {"size": size, "seed": "s"})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    assert done.status == Status.COMPLETED, done.error
    raw = _raw_steps(stack, run.id)
    assert is_pointer(raw["make"]) and is_pointer(done.output)
    # The object behind each pointer holds exactly the bytes the pointer names.
    objects = _objects(stack)
    for pointer in (raw["make"], done.output):
        digest, n = parse_pointer(pointer)
        assert objects[r.VALUE_KEY_PREFIX + digest] == n and n > size
    output = json.loads(stack.values.get(done.output))
    assert len(json.dumps(output["value"])) > size
    # The fingerprint step ran after the sleep, on the value read back from S3.
    import hashlib

    rows = output["value"]["rows"]
    assert output["digest"] == hashlib.sha256("|".join(rows).encode()).hexdigest()
    log = executions(exec_log)
    assert _count(log, run.id, "make") == 1  # replayed from the pointer, not re-run
    assert raw["fingerprint"] is not None and not is_pointer(raw["fingerprint"])


def _dangling(stack: Any, run_id: str) -> list[str]:
    """Pointers in this run's records whose object is missing (must stay empty)."""
    objects = _objects(stack)
    run = stack.store.get(run_id)
    stored = [*_raw_steps(stack, run_id).values(), run.output]
    return [
        p
        for p in stored
        if is_pointer(p) and r.VALUE_KEY_PREFIX + parse_pointer(p)[0] not in objects
    ]


def test_identical_values_are_stored_once(stack: Any) -> None:
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("large.twice", {"size": 100 * 1024})
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    raw = _raw_steps(stack, run.id)
    assert is_pointer(raw["one"]) and raw["one"] == raw["two"]
    assert len(_objects(stack)) == 1


def test_child_context_and_map_results_are_offloaded_and_replayed(
    stack: Any, exec_log: Path
) -> None:
    size = 300 * 1024
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("large.context", {"size": size})
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    raw = _raw_steps(stack, run.id)
    assert is_pointer(raw["inner"]) and is_pointer(raw["parts"])
    rows = size // 68 + 1
    assert json.loads(done.output) == rows + 2 * ((size // 2) // 68 + 1)
    # Replayed after the sleep from the context's and the map's records.
    assert len(executions(exec_log)) == 3
    assert _dangling(stack, run.id) == []


def test_batched_results_above_the_threshold_are_offloaded_and_replayed(
    stack: Any, exec_log: Path
) -> None:
    """A batch item carries pointers (objects written before it), and the claim
    after the sleep expands it and reads the values back."""
    import hashlib

    from orchestrator.store.codec import BATCH_KIND, from_item, run_pk

    size = 20 * 1024  # above the 16 KB threshold, three fit one 64 KB batch
    # Steps run again only on a lost lease (the prints are buffered until the end):
    # a lease that no late heartbeat loses. A minute's nap, ended by the skipping
    # clock, so that the run parks however slow the machine (a short one could be
    # due before the run would park).
    settings = stack.settings.with_(lease_seconds=60)
    with BackgroundWorker(LARGE, settings, clock=stack.clock):
        run, _ = stack.service.start("large.batched", {"size": size, "nap": 60})
        wait_status(stack, run.id, "sleeping", timeout=30)
        stack.clock.advance(61)
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    assert done.epoch == 2  # parked once, claimed again
    items = stack.ddb.query(
        TableName=stack.settings.table,
        KeyConditionExpression=f"{r.PK} = :pk",
        ExpressionAttributeValues={":pk": {"S": run_pk(run.id)}},
    )["Items"]
    batches = [from_item(i) for i in items if i.get("kind", {}).get("S") == BATCH_KIND]
    entries = {e[1]: e[4] for b in batches for e in json.loads(b["entries"])}
    made = [entries[f"make.{seed}"] for seed in "abc"]
    assert all(is_pointer(p) for p in made) and len(set(made)) == 3
    assert _dangling(stack, run.id) == []
    # The fingerprints ran after the park on the values read back from S3.
    log = executions(exec_log)
    assert _count(log, run.id, "make") == 3 and _count(log, run.id, "fingerprint") == 3
    expected = [
        hashlib.sha256("|".join(json.loads(stack.values.get(p))["rows"]).encode()).hexdigest()
        for p in made
    ]
    assert json.loads(done.output) == expected


def test_a_large_child_output_reaches_its_parent_as_the_value(stack: Any, exec_log: Path) -> None:
    """The child's output is offloaded; its end travels to the parent as the
    pointer (a small signal and invoke record), and the parent's worker reads the
    value, on the first run and on the replay after the sleep."""
    import hashlib

    from orchestrator.model import child_run_id

    size = 300 * 1024
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("large.parent", {"size": size})
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    child = stack.store.get(child_run_id(run.id, "0"))
    assert is_pointer(child.output)
    outcome = json.loads(_raw_steps(stack, run.id)["child"] or "")
    assert outcome["output_ref"] == child.output and outcome["output"] is None
    rows = json.loads(stack.values.get(child.output))["rows"]
    assert len(rows) == size // 68 + 1
    digest = hashlib.sha256("|".join(rows).encode()).hexdigest()
    assert json.loads(done.output) == {"rows": len(rows), "digest": digest}
    assert _count(executions(exec_log), run.id, "fingerprint") == 1


def test_a_signal_payload_stored_as_a_pointer_reaches_the_workflow_as_the_value(
    stack: Any,
) -> None:
    """The API stores signals inline (size-limited), but the worker reads every
    inbox payload through the codec: a pointer never reaches workflow code."""
    from orchestrator.payloads import object_key, pointer_of
    from tests.workflows import ALL

    data = json.dumps({"blob": "y" * 40_000}).encode()
    pointer, key = pointer_of(data)
    assert key == object_key(parse_pointer(pointer)[0])
    stack.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=data)
    run, _ = stack.service.start("waiter", {})
    stack.store.send_signal(run.id, "go", pointer)  # waits in the inbox for the run
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        done = wait_status(stack, run.id, "completed", "failed", timeout=30)
    assert done.status == Status.COMPLETED, done.error
    assert json.loads(stack.values.get(done.output) or "") == [{"blob": "y" * 40_000}]


def test_a_failed_object_write_writes_no_record(
    stack: Any, exec_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every S3 PUT fails: the step's record is never written (no pointer to a
    missing object), the run keeps its way forward, and once S3 answers again it
    completes with every pointer resolvable."""
    faults = tmp_path / "faults.jsonl"
    rule = {"kind": "5xx", "op": "s3.PutObject", "after": 0, "times": 1_000}
    monkeypatch.setenv(r.ENV_FAULTS, json.dumps({"rules": [rule], "log": str(faults)}))
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("large.value", {"size": 300 * 1024})
        # Two claims in a row failed at the object write (the second after the lease).
        wait_for(lambda: faults.exists() and len(faults.read_text().splitlines()) >= 2, 30)
        assert "make" not in _raw_steps(stack, run.id)
        assert _objects(stack) == {}
    monkeypatch.delenv(r.ENV_FAULTS)
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    assert done.status == Status.COMPLETED, done.error
    assert _count(executions(exec_log), run.id, "make") >= 3
    assert is_pointer(_raw_steps(stack, run.id)["make"])
    assert _dangling(stack, run.id) == []


def test_a_worker_killed_after_a_large_record_resumes_from_the_pointer(
    stack: Any, exec_log: Path
) -> None:
    env = worker_env(stack, exec_log)
    size = 5 * 1024 * 1024
    with WorkerProcess(env, module="tests.workflows_large") as first:
        run, _ = stack.service.start("large.value", {"size": size, "hold": 5})
        # The large record and the step after the sleep are written and the slow
        # step has started: kill mid-run.
        wait_for(lambda: _count(executions(exec_log), run.id, "again") == 1, timeout=60)
        assert "fingerprint" in _raw_steps(stack, run.id)
        first.kill()
    assert stack.store.get(run.id).status == Status.RUNNING
    with WorkerProcess(env, module="tests.workflows_large") as second:
        done = wait_status(stack, run.id, "completed", "failed", timeout=90)
        second.terminate()
    assert done.status == Status.COMPLETED, done.error
    log = executions(exec_log)
    assert _count(log, run.id, "make") == 1  # read back from its pointer by the second worker
    assert _count(log, run.id, "again") == 2  # killed mid-step, then run again
    assert _count(log, run.id, "fingerprint") == 1
    assert _dangling(stack, run.id) == []
    assert len(json.loads(stack.values.get(done.output))["value"]["rows"]) == size // 68 + 1


@pytest.mark.slow
def test_a_100_mb_value_goes_through_a_step_and_the_output(stack: Any, exec_log: Path) -> None:
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        # 95 MB of rows is about 104 MB of JSON: just under the 100 MiB limit.
        run, _ = stack.service.start("large.value", {"size": 95_000_000})
        done = wait_status(stack, run.id, "completed", "failed", timeout=600)
    assert done.status == Status.COMPLETED, done.error
    _, n = parse_pointer(done.output)
    assert 100_000_000 < n <= 100 * 1024 * 1024
    assert _count(executions(exec_log), run.id, "make") == 1
    assert _dangling(stack, run.id) == []


def test_the_api_returns_an_offloaded_value_inline_or_as_a_link(stack: Any) -> None:
    """Up to MAX_INLINE_READ_BYTES the GET returns the value itself; above it a
    presigned link, which the Python client follows."""
    from orchestrator import Client
    from orchestrator.payloads import MAX_INLINE_READ_BYTES

    client = Client(stack.api_url)
    sizes = {"small": 300 * 1024, "big": 2 * MAX_INLINE_READ_BYTES}
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        runs = {k: stack.service.start("large.value", {"size": n})[0] for k, n in sizes.items()}
        for run in runs.values():
            assert wait_status(stack, run.id, "completed", "failed", timeout=60).error is None
    small = client.get(runs["small"].id, follow_links=False)
    assert "output_link" not in small and len(small["output"]["value"]["rows"]) > 1000
    big = client.get(runs["big"].id, follow_links=False)
    assert big["output"] is None and big["output_link"]["bytes"] > MAX_INLINE_READ_BYTES
    followed = client.get(runs["big"].id)
    assert followed["output"] == json.loads(
        stack.values.get(stack.store.get(runs["big"].id).output)
    )
    steps = {s["name"]: s for s in client.steps(runs["big"].id, follow_links=False)}
    assert steps["make"]["result"] is None and steps["make"]["result_link"]["url"]
    steps = {s["name"]: s for s in client.steps(runs["big"].id)}
    assert steps["make"]["result"] == followed["output"]["value"]
    # Lists read no values: the link names the object without a URL.
    listed = {w["id"]: w for w in client.list()["workflows"]}
    assert listed[runs["small"].id]["output_link"].keys() == {"bytes", "sha256"}


def test_the_http_api_keeps_its_own_limits_with_a_413_naming_them(stack: Any) -> None:
    from orchestrator import Client, PayloadTooLargeError
    from orchestrator.model import MAX_INPUT_BYTES, MAX_SIGNAL_PAYLOAD_BYTES

    client = Client(stack.api_url)
    run, _ = stack.service.start("large.value", {"size": 1})
    with pytest.raises(PayloadTooLargeError, match=f"the limit is {MAX_SIGNAL_PAYLOAD_BYTES}"):
        client.signal(run.id, "go", "x" * MAX_SIGNAL_PAYLOAD_BYTES)
    with pytest.raises(PayloadTooLargeError, match=f"the limit is {MAX_INPUT_BYTES}"):
        client.start("large.value", {"pad": "x" * MAX_INPUT_BYTES})
    assert stack.store.inbox(run.id) == []  # nothing stored
    assert len(client.list()["workflows"]) == 1


def test_the_replay_check_reads_offloaded_values_back(stack: Any) -> None:
    """`replay-check` and `migrate` replay through the real code: a recorded
    value stored in S3 must reach the replay as the value, not its pointer."""
    import asyncio

    from worker import definition_of, replay_check

    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("large.value", {"size": 300_000, "sleep": 3600})
        wait_status(stack, run.id, "sleeping", timeout=60)
    parked = stack.store.get(run.id)
    assert is_pointer(_raw_steps(stack, run.id)["make"])
    definitions = {d.name: d for d in map(definition_of, LARGE)}

    def check(values: Any) -> Any:
        return asyncio.run(
            replay_check(definitions, [parked], stack.ddb, stack.settings.table, values=values)
        )

    report = check(stack.values)
    assert [(v.ok, v.outcome) for v in report.verdicts] == [(True, "waits")]  # at its sleep
    # Without the reader the replay saw the pointer where the value was, and
    # reported the run as raising (a pydantic error on the pointer text).
    (blind,) = check(None).verdicts
    assert blind.outcome.startswith("raised")


def test_without_a_bucket_a_value_over_the_item_limit_fails_its_step(stack: Any) -> None:
    """No ORCHESTRATOR_BUCKET: nothing is offloaded, and a result that would not
    fit in an item fails its step (it is not retried forever as a store error)."""
    no_bucket = stack.settings.with_(bucket="")
    with BackgroundWorker(LARGE, no_bucket, clock=stack.clock):
        run, _ = stack.service.start("large.value", {"size": 250_000})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    assert done.status == Status.FAILED and done.error is not None
    assert "PayloadTooLargeError" in done.error.message
    assert str(r.MAX_INLINE_BYTES) in done.error.message
    assert _raw_steps(stack, run.id).get("make") is None  # no record, no object
    assert _objects(stack) == {}


def test_a_large_child_input_and_next_generation_input_go_through_the_store(
    stack: Any,
) -> None:
    """Inputs a worker writes (a child's, a continue-as-new's) are offloaded like
    results: above the API's 128 KB, the run item keeps a pointer, and the run
    that reads the input gets the value."""
    import hashlib

    from orchestrator import Client
    from orchestrator.model import child_run_id

    size = 300 * 1024
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        run, _ = stack.service.start("large.sender", {"size": size})
        done = wait_status(stack, run.id, "completed", "failed", timeout=60)
    assert done.status == Status.COMPLETED, done.error
    assert done.generation == 1 and is_pointer(done.input)
    rows = json.loads(stack.values.get(done.input))["value"]["rows"]
    expected = hashlib.sha256("|".join(rows).encode()).hexdigest()
    assert json.loads(done.output) == {"child": expected, "next": expected}
    child = stack.store.get(child_run_id(run.id, "0"))
    assert is_pointer(child.input) and child.status == Status.COMPLETED
    # The API shows the input itself (under its inline read limit), not the pointer.
    view = Client(stack.api_url).get(child.id, follow_links=False)
    assert view["input"]["value"]["rows"] == rows and "input_link" not in view
