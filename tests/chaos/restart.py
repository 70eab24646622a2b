"""The embedded stack restarted on its state dir mid-campaign, as `orchestrator
dev` is when stopped and started again.

moto keeps its state per process, so stopping its server and starting another
in the same process would keep everything: not a restart. `restart` does what a
real one does instead:

1. closes the stack to every request (a WSGI gate in front of moto answers 503
   with `Connection: close`; the SDKs retry it) and waits until the requests
   already inside have left, so nothing is written after the snapshot. The
   gate wraps moto's application from the server's start (`gated`), so every
   request is counted: one put in place later would not count the requests
   already past it, and a write that slipped in beside the snapshot would be
   acknowledged and then lost (a loaded run of the short campaign found it);
2. saves the snapshot (orchestrator/local/snapshot.py) through a second,
   fault-free server on the same in-process state, then empties that state;
3. stops the stack and starts a new one on the same port (the workers keep
   their endpoint: they see refused connections and 503s meanwhile);
4. restores the snapshot into it, fault-free, retried as a whole if an injected
   fault hits the part that goes through the new stack's own clients.

Queue messages in flight or delayed are lost, as in the real restart: restore
sends every unfinished run its message again."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from orchestrator import resources as r
from orchestrator import testing_faults as faults
from orchestrator.local import LocalStack
from orchestrator.local.aws import MotoServer
from orchestrator.local.snapshot import restore, save

# What a closed gate still lets through: the calls that create and describe
# resources (the new stack's bootstrap, before its restore), which no worker
# makes. Every call on items, messages, objects or schedules waits.
_CONTROL_TARGETS = frozenset(
    {
        "DynamoDB_20120810.CreateTable",
        "DynamoDB_20120810.DescribeTable",
        "DynamoDB_20120810.UpdateTimeToLive",
        "DynamoDB_20120810.DescribeTimeToLive",
        "AmazonSQS.CreateQueue",
        "AmazonSQS.GetQueueUrl",
        "AmazonSQS.GetQueueAttributes",
        "AmazonSQS.SetQueueAttributes",
    }
)
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([a-z0-9-]+)/aws4_request")


def control_plane(environ: dict[str, Any]) -> bool:
    """A request that creates or describes a resource: a table, a queue, a bucket
    (a path with no key), a schedule group."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target in _CONTROL_TARGETS
    scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else None
    path = environ.get("PATH_INFO", "")
    if service == "s3":
        return path.strip("/").count("/") == 0  # /<bucket>: the bucket, not an object
    if service == "scheduler":
        return path.startswith("/schedule-groups")
    return False


class Gate:
    """WSGI middleware: open, it passes requests through and counts those inside;
    closed, it answers 503 with `Connection: close` (the client opens a new
    connection for its retry, which reaches the next server on the port), to
    every request but those that create or describe resources (`control_plane`)."""

    def __init__(self, app: Any, *, closed: bool = False) -> None:
        self.app = app
        self._open = not closed
        self._inside = 0
        self._cond = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._cond:
            if not self._open and not control_plane(environ):
                body = b'{"__type":"ServiceUnavailable","message":"the stack is restarting"}'
                start_response(
                    "503 Service Unavailable",
                    [
                        ("Content-Type", "application/x-amz-json-1.0"),
                        ("Content-Length", str(len(body))),
                        ("Connection", "close"),
                    ],
                )
                return [body]
            self._inside += 1
        try:
            return list(self.app(environ, start_response))  # the whole answer, inside
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()

    def open(self) -> None:
        with self._cond:
            self._open = True

    def close(self, timeout: float = 60.0) -> None:
        """Refuse new requests; return once none is inside (long polls end within
        the workers' poll time)."""
        with self._cond:
            self._open = False
            if not self._cond.wait_for(lambda: self._inside == 0, timeout):
                raise RuntimeError(f"{self._inside} request(s) still inside after {timeout} s")


def gated(*, closed: bool = False) -> Any:
    """The `aws_middleware` of a stack the campaign may restart: a gate in front
    of its moto application from the first request on."""
    return lambda app: Gate(app, closed=closed)


def gate(stack: LocalStack) -> Gate:
    """The gate in front of the stack's moto server (made with `gated`)."""
    assert stack.moto is not None and stack.moto._server is not None
    g = stack.moto._server.app
    assert isinstance(g, Gate), "the stack was not made with aws_middleware=gated()"
    return g


@dataclass
class _Plain:
    """What snapshot.save/restore use of a stack, with fault-free clients."""

    settings: Any
    clock: Any
    ddb: Any
    sqs: Any
    s3: Any
    scheduler: Any
    emulator: Any = None


def _plain(stack: LocalStack, endpoint: str) -> _Plain:
    session = boto3.session.Session()
    settings = stack.settings.with_(endpoint_url=endpoint)
    kw = {"region_name": settings.region, "endpoint_url": endpoint}
    return _Plain(
        settings,
        stack.clock,
        session.client("dynamodb", **kw),
        session.client("sqs", **kw),
        session.client("s3", **kw),
        session.client("scheduler", **kw),
        stack.emulator,
    )


def wait_for_a_value(stack: LocalStack, timeout: float) -> bool:
    """Wait (up to `timeout` s) until the value bucket holds a value's object (not
    only another object, such as a map's items), so that a restart has large
    values to keep; whether it does."""
    s3 = _plain(stack, stack.settings.endpoint_url).s3
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        listed = s3.list_objects_v2(
            Bucket=stack.settings.bucket, Prefix=r.VALUE_KEY_PREFIX, MaxKeys=1
        )
        if listed.get("KeyCount", 0) > 0:
            return True
        time.sleep(0.2)
    return False


def restart(
    stack: LocalStack,
    state_dir: Path,
    make: Callable[..., LocalStack],
    fault_spec: str,
) -> tuple[LocalStack, dict[str, int]]:
    """Restart `stack` on `state_dir`; (the new stack, what the snapshot held).
    `make(port, closed=True)` builds (not starts) the new stack on the old moto
    port, its gate closed."""
    assert stack.moto is not None
    port = int(stack.moto.url.rsplit(":", 1)[1])
    gate(stack).close()
    side = MotoServer(allow_reset=True).start()  # the same in-process state, no gate
    try:
        saved = save(_plain(stack, side.url), state_dir / "state.json")  # type: ignore[arg-type]
        side.reset()  # what a stopped process leaves: nothing
    finally:
        side.stop()
    stack.stop()
    previous = os.environ.get(faults.ENV_FAULTS)
    os.environ[faults.ENV_FAULTS] = fault_spec  # the new stack's own clients get faults too
    try:
        new = _start(make, port)
    finally:
        if previous is None:
            os.environ.pop(faults.ENV_FAULTS, None)
        else:
            os.environ[faults.ENV_FAULTS] = previous
    # The new stack serves nobody until the restore is done (as `orchestrator dev`
    # restores before it serves): a request in between would find an empty table
    # (a callback's completion answered 404, a run unknown). Its gate is closed
    # from its first request.
    held = gate(new)
    side = MotoServer(allow_reset=True).start()
    try:
        for attempt in range(10):
            try:
                restore(_plain(new, side.url), state_dir / "state.json")  # type: ignore[arg-type]
                break
            except Exception:
                if attempt == 9:
                    raise
    finally:
        side.stop()
        held.open()
    return new, {**saved, **_lost(new, state_dir / "state.json")}


def _lost(stack: LocalStack, path: Path) -> dict[str, int]:
    """What the snapshot held that the restored stack lacks: values (objects are
    never deleted here) and runs (nor are run items)."""
    state = json.loads(path.read_text())
    plain = _plain(stack, stack.settings.endpoint_url)
    pages = plain.s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.settings.bucket, Prefix=r.VALUE_KEY_PREFIX
    )
    present = {o["Key"][len(r.VALUE_KEY_PREFIX) :] for p in pages for o in p.get("Contents", [])}
    keys = {r.PK: {"S": ""}, r.SK: {"S": "RUN"}}
    runs = [i[r.PK]["S"] for i in state["items"] if i.get(r.SK, {}).get("S") == "RUN"]
    missing = 0
    for pk in runs:
        got = plain.ddb.get_item(
            TableName=stack.settings.table, Key={**keys, r.PK: {"S": pk}}, ConsistentRead=True
        )
        missing += "Item" not in got
    return {"values lost": len(set(state["values"]) - present), "runs lost": missing}


def _start(make: Callable[..., LocalStack], port: int) -> LocalStack:
    """The new stack on `port`, its gate closed; the port is free again once the
    old server closed it, but give the OS a few tries (another process may hold
    it for a moment)."""
    for attempt in range(50):
        try:
            return make(port, closed=True).start()
        except OSError:
            if attempt == 49:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


# A run claimed more often than this loops (a value it cannot read, a message
# that never settles): the campaign's claims per run stay far below it.
MAX_CLAIMS = 50


def check_restarts(o: Any, report: Any) -> None:
    """What a restart must not break, on top of every other check (which all
    apply to runs across a restart): no run loops, and the stack did restart."""
    looping = [
        f"{rid}: {run.epoch} claims ({run.status.value})"
        for rid, run in o.runs.items()
        if run is not None and run.epoch > MAX_CLAIMS
    ]
    report.violations["no run loops (claims per run bounded)"] = looping
    report.violations["a restart keeps every value and run of its snapshot"] = [
        f"restart {i + 1}: {held['values lost']} value(s), {held['runs lost']} run(s) lost"
        for i, held in enumerate(o.restored)
        if held.get("values lost") or held.get("runs lost")
    ]
    claims = [run.epoch for run in o.runs.values() if run is not None]
    report.facts["most claims of one run"] = max(claims, default=0)
    report.facts["stack restarts survived"] = len(o.restored)
    report.facts["restored by each restart"] = o.restored
