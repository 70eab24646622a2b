"""Fault injection for the AWS clients of workers, the API and the sweeper:
test tooling, off the production path.

No production module imports this package. `orchestrator.aws.instrument` is
the one hook: when the environment variable ``ORCHESTRATOR_FAULTS``
(`resources.ENV_FAULTS`) is set, it imports this package and calls
`install()`, which registers botocore event hooks on a client or a session
(boto3's or aioboto3's; clients created from a session copy its hooks).
Unset, nothing here is loaded. Standard library and botocore only. The spec
is JSON or ``key=value`` pairs:

    ORCHESTRATOR_FAULTS='seed=7,throttle=0.02,5xx=0.01,conn=0.01,latency=0.05,lost=0.01,duplicate=0.05'
    ORCHESTRATOR_FAULTS='{"seed": 7, "lost": 0.02, "ops": ["dynamodb.*"], "log": "/tmp/faults.jsonl"}'

Fault kinds (rates are per API call; see ``attempt.*`` below for per-attempt ones):

- ``throttle``: the call fails with ProvisionedThroughputExceededException
  (DynamoDB) or ThrottlingException (SQS, Scheduler), HTTP 400.
- ``5xx``: the call fails with InternalServerError, HTTP 500.
- ``conn``: the call fails with a connection error (EndpointConnectionError),
  the request never reached the service.
- ``latency``: the call is delayed by ``latency_ms`` ([low, high], uniform)
  before it is sent (asyncio.sleep for aioboto3 clients, time.sleep otherwise).
- ``lost``: the call is applied, then the caller sees ConnectionClosedError
  (the response was lost): the write happened but the caller does not know.
- ``lost_retry``: the call is applied, its response is dropped and the SDK
  sends it again (a real SDK retry after a lost response); the caller sees
  the second attempt's answer. TransactWriteItems is skipped: on AWS its
  ClientRequestToken makes an SDK retry idempotent, which moto does not emulate.
- ``duplicate``: an SQS message returned by ReceiveMessage is delivered
  twice. With ``duplicate_mode`` ``resend`` (the default) the same body is
  sent to the queue again at once: a second, independent copy, as SQS's
  at-least-once delivery produces (its own receipt handle, any worker may get
  it). With ``copy`` the copy is added to the same response with the same
  receipt handle, which is harsher than SQS (deleting either deletes both).
- ``duplicate_late``: the same body is sent again with a delay drawn from
  ``duplicate_delay_ms`` ([low, high], whole seconds on SQS), so the copy
  usually arrives after the original was handled.

Rates per service: ``<service>.<kind>`` (``s3.5xx``, ``s3.attempt.throttle``;
in JSON also ``{"s3": {"5xx": 0.05}}``) replaces the general rate of that kind
for calls to that service (dynamodb, sqs, s3, scheduler): the campaign gives
S3's few calls higher rates than DynamoDB's many. On S3 (PutObject and
GetObject of large values) a throttle is SlowDown (503) and a 5xx is
InternalError (500), with S3's XML error body on an attempt; a lost PutObject
was stored.

Per HTTP attempt: ``attempt.throttle``, ``attempt.5xx``, ``attempt.conn`` fail
one attempt, inside the SDK's retry loop: the SDK's retry policy sees them,
retries with backoff, and the caller sees an error only when every attempt
failed (counted as ``attempt.<kind>``). ``throttle``, ``5xx`` and ``conn``
above reach the caller directly, as if the SDK had given up; ``scope=attempt``
turns them into their ``attempt.*`` forms.

Other keys: ``seed`` (the process's random sequence; give each process its
own), ``ops`` / ``exclude`` (fnmatch patterns on
``service.Operation``, e.g. ``dynamodb.*``; in key=value form separate
patterns with ``|``), ``log`` (a file that gets one JSON line per injected
fault), ``journal`` (a file that gets one JSON line per DynamoDB write, SQS
message call and S3 PutObject, for the chaos checks; its format is in
`orchestrator/testing_faults/journal.py`), and ``rules``
(JSON only): targeted faults, each ``{"kind", "op", "match", "after", "times"}``:
inject ``kind`` (a failure kind or latency) into calls of ``op`` whose request
body contains ``match``, skipping the first ``after`` matching calls, at most
``times`` times; a ``lost_retry`` rule takes ``retry_after_ms``, the time the
SDK waits before it sends the call again (10 ms by default).

One plan per spec per process: every client installed with the same spec
shares its random sequence, counters and rules. `stats()` returns the counts.

Modules: `plan` (the kinds, the plan's decisions, the spec parser), `hooks`
(the botocore hooks that carry them out), `journal` (what a journaled call
means).
"""

from __future__ import annotations

import inspect
import os
import threading
from typing import Any

from .hooks import Hooks
from .plan import ENV_FAULTS, KINDS, SERVICES, FaultPlan, Rule, parse

_PLANS: dict[str, FaultPlan] = {}
_PLANS_LOCK = threading.Lock()


def plan_for(spec: str) -> FaultPlan:
    with _PLANS_LOCK:
        plan = _PLANS.get(spec)
        if plan is None:
            plan = _PLANS[spec] = parse(spec)
        return plan


def reset() -> None:
    """Forget every plan (tests): the next install() starts a fresh sequence."""
    with _PLANS_LOCK:
        _PLANS.clear()


def stats() -> dict[str, int]:
    """Faults injected in this process so far, by kind, over every active plan."""
    out: dict[str, int] = {}
    with _PLANS_LOCK:
        plans = list(_PLANS.values())
    for plan in plans:
        with plan.lock:
            for kind, n in plan.counts.items():
                out[kind] = out.get(kind, 0) + n
    return out


def install(target: Any, spec: str | None = None) -> FaultPlan | None:
    """Register the fault hooks on a client (``.meta.events``) or a session
    (``.events``). With no `spec`, read ORCHESTRATOR_FAULTS; unset or empty:
    do nothing and return None."""
    spec = os.environ.get(ENV_FAULTS, "") if spec is None else spec
    if not spec.strip():
        return None
    plan = plan_for(spec)
    meta = getattr(target, "meta", None)
    events = getattr(meta, "events", None) if meta is not None else None
    if events is None:
        events = getattr(target, "events", None)
    if events is None:
        raise TypeError(f"cannot install faults on {type(target).__name__}: no event system")
    inner = events
    while getattr(inner, "_emitter", None) is not None:  # botocore's EventAliaser wraps it
        inner = inner._emitter
    is_async = inspect.iscoroutinefunction(getattr(type(inner), "_emit", None))
    hooks = Hooks(plan, is_async)
    uid = f"orchestrator-faults-{id(plan)}"
    before = hooks.before_call_async if is_async else hooks.before_call_sync
    events.register("before-call", before, unique_id=f"{uid}-before-call")
    events.register("before-send", hooks.before_send, unique_id=f"{uid}-before-send")
    events.register("needs-retry", hooks.needs_retry, unique_id=f"{uid}-needs-retry")
    events.register("after-call", hooks.after_call, unique_id=f"{uid}-after-call")
    return plan


__all__ = [
    "ENV_FAULTS",
    "KINDS",
    "SERVICES",
    "FaultPlan",
    "Rule",
    "install",
    "parse",
    "plan_for",
    "reset",
    "stats",
]
