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
fault), ``journal`` (a file that gets one JSON line per DynamoDB write and
SQS message call, for the chaos checks; its format is in
`orchestrator/testing_faults/journal.py`), and ``rules``
(JSON only): targeted faults, each ``{"kind", "op", "match", "after", "times"}``:
inject ``kind`` (a failure kind or latency) into calls of ``op`` whose request
body contains ``match``, skipping the first ``after`` matching calls, at most
``times`` times; a ``lost_retry`` rule takes ``retry_after_ms``, the time the
SDK waits before it sends the call again (10 ms by default).

One plan per spec per process: every client installed with the same spec
shares its random sequence, counters and rules. `stats()` returns the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from .. import resources as r
from .journal import _REFUSALS, _SQS_OPS, _WRITE_OPS, _journal_entry

ENV_FAULTS = r.ENV_FAULTS
FAILURE_KINDS = ("throttle", "5xx", "conn", "lost", "lost_retry")
KINDS = (*FAILURE_KINDS, "latency", "duplicate", "duplicate_late")
ATTEMPT_KINDS = ("throttle", "5xx", "conn")
_CTX = "orchestrator_faults"  # key in botocore's per-call request context


@dataclass
class Rule:
    kind: str
    op: str = "*"
    match: str = ""
    after: int = 0
    times: int = 1
    retry_after_ms: float = 10.0  # lost_retry: how long the SDK waits before it re-sends
    seen: int = 0
    fired: int = 0

    def take(self, op: str, body: str) -> bool:
        if self.fired >= self.times or not fnmatch.fnmatchcase(op, self.op):
            return False
        if self.match and self.match not in body:
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        self.fired += 1
        return True


@dataclass
class FaultPlan:
    rates: dict[str, float] = field(default_factory=dict)
    attempt_rates: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    scope: str = "call"
    ops: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    latency_ms: tuple[float, float] = (50.0, 500.0)
    duplicate_mode: str = "resend"
    duplicate_delay_ms: tuple[float, float] = (1000.0, 5000.0)
    log: str | None = None
    journal: str | None = None
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        for kind in self.rates:
            if kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        for rule in self.rules:
            if rule.kind not in (*FAILURE_KINDS, "latency"):
                raise ValueError(f"a rule injects one of {FAILURE_KINDS} or latency")
        if self.scope not in ("call", "attempt"):
            raise ValueError("scope is 'call' or 'attempt'")
        if self.scope == "attempt":
            for kind in ATTEMPT_KINDS:
                if kind in self.rates:
                    self.attempt_rates[kind] = self.rates.pop(kind)
        for kind in self.attempt_rates:
            if kind not in ATTEMPT_KINDS:
                raise ValueError(f"attempt.{kind} is not a fault kind; known: throttle, 5xx, conn")
        if self.duplicate_mode not in ("resend", "copy"):
            raise ValueError("duplicate_mode is 'resend' or 'copy'")
        self.rng = random.Random(self.seed)
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.calls = 0
        self._senders: dict[tuple[str, str], Any] = {}  # plain SQS clients for re-sends

    # --- decisions (under the lock) -----------------------------------------------------
    def _selected(self, op: str) -> bool:
        return any(fnmatch.fnmatchcase(op, p) for p in self.ops) and not any(
            fnmatch.fnmatchcase(op, p) for p in self.exclude
        )

    def _roll(self, kind: str, rates: dict[str, float] | None = None) -> bool:
        rate = (self.rates if rates is None else rates).get(kind, 0.0)
        return rate > 0 and self.rng.random() < rate

    def decide_call(self, op: str, body: str) -> tuple[str | None, float]:
        """(failure kind or None, latency seconds) for one API call; a lost_retry
        rule gives its retry delay instead of a latency."""
        with self.lock:
            self.calls += 1
            for rule in self.rules:
                if rule.take(op, body):
                    if rule.kind == "latency":
                        return None, self._latency()
                    if rule.kind == "lost_retry":
                        return rule.kind, -rule.retry_after_ms / 1000
                    return rule.kind, 0.0
            if not self._selected(op):
                return None, 0.0
            delay = self._latency() if self._roll("latency") else 0.0
            for kind in FAILURE_KINDS:
                if kind == "lost_retry" and op.endswith(".TransactWriteItems"):
                    continue
                if self._roll(kind):
                    return kind, delay
            return None, delay

    def decide_attempt(self, op: str) -> str | None:
        if not self.attempt_rates:
            return None
        with self.lock:
            if not self._selected(op):
                return None
            for kind in ATTEMPT_KINDS:
                if self._roll(kind, self.attempt_rates):
                    return kind
            return None

    def _latency(self) -> float:
        lo, hi = self.latency_ms
        return self.rng.uniform(lo, hi) / 1000

    def duplicates(self, messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], int]]:
        """(kind, message, delay seconds) for each received message to deliver again."""
        if not (self.rates.get("duplicate") or self.rates.get("duplicate_late")):
            return []
        out: list[tuple[str, dict[str, Any], int]] = []
        with self.lock:
            for m in messages:
                if self._roll("duplicate"):
                    out.append(("duplicate", m, 0))
                elif self._roll("duplicate_late"):
                    lo, hi = self.duplicate_delay_ms
                    delay = max(1, min(900, round(self.rng.uniform(lo, hi) / 1000)))
                    out.append(("duplicate_late", m, delay))
        return out

    def resend(self, endpoint: str, region: str, queue_url: str, body: str, delay: int) -> None:
        """Send `body` to the queue again through a plain client (no hooks)."""
        import botocore.session

        client: Any
        with self.lock:
            client = self._senders.get((endpoint, region))
            if client is None:
                client = botocore.session.get_session().create_client(
                    "sqs", region_name=region, endpoint_url=endpoint or None
                )
                self._senders[(endpoint, region)] = client
        client.send_message(QueueUrl=queue_url, MessageBody=body, DelaySeconds=delay)

    # --- records --------------------------------------------------------------------------
    def count(self, kind: str, op: str, **detail: Any) -> None:
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.log:
            line = {"t": _now_ms(), "pid": os.getpid(), "kind": kind, "op": op, **detail}
            _append(self.log, line)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _append(path: str, record: dict[str, Any]) -> None:
    # One write() per line on an O_APPEND descriptor: lines from several
    # processes do not interleave.
    data = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# --- the spec -------------------------------------------------------------------------------
def parse(spec: str) -> FaultPlan:
    """A FaultPlan from JSON or ``key=value,...`` text; ValueError if malformed."""
    text = spec.strip()
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{ENV_FAULTS} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{ENV_FAULTS} must be a JSON object")
    else:
        raw = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"{ENV_FAULTS}: {part!r} is not key=value")
            raw[key.strip()] = value.strip()
    rates: dict[str, float] = {}
    attempt: dict[str, float] = {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if key in KINDS:
            rates[key] = _rate(key, value)
        elif key.startswith("attempt."):
            attempt[key.split(".", 1)[1]] = _rate(key, value)
        elif key == "attempt" and isinstance(value, dict):
            attempt.update({k: _rate(f"attempt.{k}", v) for k, v in value.items()})
        elif key == "seed":
            options["seed"] = int(value)
        elif key == "scope":
            options["scope"] = str(value)
        elif key in ("ops", "exclude"):
            options[key] = value.split("|") if isinstance(value, str) else list(value)
        elif key == "duplicate_mode":
            options[key] = str(value)
        elif key in ("latency_ms", "duplicate_delay_ms"):
            options[key] = _range(key, value)
        elif key in ("log", "journal"):
            options[key] = str(value)
        elif key == "rules":
            options["rules"] = [Rule(**r) for r in value]
        else:
            raise ValueError(f"{ENV_FAULTS}: unknown key {key!r}")
    return FaultPlan(rates=rates, attempt_rates=attempt, **options)


def _rate(key: str, value: Any) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{ENV_FAULTS}: rate of {key} must be between 0 and 1")
    return rate


def _range(key: str, value: Any) -> tuple[float, float]:
    parts = value.split("-") if isinstance(value, str) else list(value)
    lo, hi = (float(parts[0]), float(parts[-1]))
    if lo < 0 or hi < lo:
        raise ValueError(f"{ENV_FAULTS}: {key} must be [low, high] with 0 <= low <= high")
    return lo, hi


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


# --- the hooks -----------------------------------------------------------------------------
def _op(event_name: str) -> str:
    parts = event_name.split(".")
    return f"{parts[1]}.{parts[2]}" if len(parts) >= 3 else event_name


def _code(kind: str, service: str) -> tuple[int, str]:
    if kind == "5xx":
        return 500, "InternalServerError"
    if service == "dynamodb":
        return 400, "ProvisionedThroughputExceededException"
    return 400, "ThrottlingException"


class _FakeHttp:
    """What botocore's after-call handlers read from a short-circuited call."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers = HeadersDict()
        self.content = b""
        self.raw = None


class _AioResponse:
    """An HTTP response aiobotocore can parse (its `content` is awaitable)."""

    def __init__(self, url: str, status: int, headers: dict[str, str], body: bytes) -> None:
        self.url = url
        self.status_code = status
        self.headers = HeadersDict(headers)
        self.raw = None
        self._body = body

    @property
    def content(self) -> Any:
        async def read() -> bytes:
            return self._body

        return read()

    @property
    def text(self) -> Any:
        async def read() -> str:
            return self._body.decode()

        return read()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _endpoint(url: str) -> str:
    """scheme://host[:port] of a request URL."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if rest else ""


def _body_text(params: Any) -> str:
    body = params.get("body") if isinstance(params, dict) else None
    if isinstance(body, bytes | bytearray):
        return body.decode(errors="replace")
    return body if isinstance(body, str) else ""


class _Hooks:
    def __init__(self, plan: FaultPlan, is_async: bool) -> None:
        self.plan = plan
        self.is_async = is_async

    # before-call: decide for the call, delay it, or fail it without sending.
    def _before_call(self, event_name: str, params: Any, context: dict[str, Any]) -> Any:
        op = _op(event_name)
        body = _body_text(params)
        kind, delay = self.plan.decide_call(op, body)
        state: dict[str, Any] = {"op": op, "kind": kind}
        if delay < 0:  # a lost_retry rule's retry delay, not a latency
            state["retry_after"], delay = -delay, 0.0
        context[_CTX] = state
        if self.plan.journal and (
            (op.startswith("dynamodb.") and op.split(".")[1] in _WRITE_OPS) or op in _SQS_OPS
        ):
            state["journal"] = body
        if op == "sqs.ReceiveMessage":
            state["endpoint"] = _endpoint(str(params.get("url", "")))
            state["region"] = context.get("client_region") or "us-east-1"
            with contextlib.suppress(ValueError, AttributeError):
                state["queue"] = json.loads(body).get("QueueUrl")
        if delay:
            self.plan.count("latency", op, ms=round(delay * 1000))
        return state, delay

    def _short_circuit(self, state: dict[str, Any], url: str) -> Any:
        kind, op = state["kind"], state["op"]
        if kind == "conn":
            self.plan.count(kind, op, scope="call")
            state["kind"] = None
            raise EndpointConnectionError(endpoint_url=url)
        if kind in ("throttle", "5xx"):
            self.plan.count(kind, op, scope="call")
            state["kind"] = None
            status, code = _code(kind, op.split(".")[0])
            parsed = {
                "Error": {"Code": code, "Message": f"injected fault: {kind}"},
                "ResponseMetadata": {
                    "HTTPStatusCode": status,
                    "HTTPHeaders": {},
                    "RequestId": "injected-fault",
                    "RetryAttempts": 0,
                },
            }
            return _FakeHttp(status), parsed
        if state.get("journal") is not None:
            state["t0"] = _now_ms()  # after the delay: the request is about to go out
        return None

    def before_call_sync(
        self, event_name: str, params: Any, context: dict[str, Any], **_: Any
    ) -> Any:
        state, delay = self._before_call(event_name, params, context)
        if delay:
            time.sleep(delay)
        return self._short_circuit(state, str(params.get("url", "")))

    async def before_call_async(
        self, event_name: str, params: Any, context: dict[str, Any], **_: Any
    ) -> Any:
        state, delay = self._before_call(event_name, params, context)
        if delay:
            await asyncio.sleep(delay)
        return self._short_circuit(state, str(params.get("url", "")))

    # before-send: per-attempt faults (scope=attempt), which the SDK's retries see.
    def before_send(self, event_name: str, request: Any, **_: Any) -> Any:
        op = _op(event_name)
        kind = self.plan.decide_attempt(op)
        if kind is None:
            return None
        self.plan.count(f"attempt.{kind}", op)
        if kind == "conn":
            raise EndpointConnectionError(endpoint_url=request.url)
        status, code = _code(kind, op.split(".")[0])
        body = json.dumps({"__type": code, "message": f"injected fault: {kind}"}).encode()
        headers = {"x-amzn-ErrorType": code, "Content-Type": "application/x-amz-json-1.0"}
        if self.is_async:
            return _AioResponse(request.url, status, headers, body)
        return AWSResponse(request.url, status, cast(Any, headers), _Raw(body))

    # needs-retry: drop the response of an applied call once, so the SDK sends it again.
    def needs_retry(
        self, attempts: int, response: Any = None, request_dict: Any = None, **_: Any
    ) -> Any:
        context = (request_dict or {}).get("context") or {}
        state = context.get(_CTX)
        if not state or state.get("kind") != "lost_retry" or response is None:
            return None
        http = response[0]
        if getattr(http, "status_code", 500) >= 300:
            return None
        state["kind"] = None
        self._journal(state, response[1], note="response dropped; the SDK sends it again")
        self.plan.count("lost_retry", state["op"], attempt=attempts)
        return state.get("retry_after", 0.01)

    # after-call: record the write, lose the answer of an applied call, duplicate messages.
    def after_call(
        self,
        event_name: str,
        http_response: Any,
        parsed: Any,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        state = (context or {}).get(_CTX)
        if not state:
            return
        op = state["op"]
        ok = getattr(http_response, "status_code", 500) < 300
        if ok:
            self._journal(state, parsed)
        else:
            code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
            if code in _REFUSALS:  # a condition refused it: journaled as refused, not applied
                self._journal(state, parsed, refused=code)
        if ok and op == "sqs.ReceiveMessage" and isinstance(parsed, dict):
            messages = parsed.get("Messages") or []
            copies = []
            for kind, m, delay in self.plan.duplicates(messages):
                self.plan.count(kind, op, message=m.get("MessageId"), delay_s=delay)
                if kind == "duplicate" and self.plan.duplicate_mode == "copy":
                    copies.append(dict(m))
                elif state.get("queue"):
                    with contextlib.suppress(Exception):  # a fault, not the caller's error
                        self.plan.resend(
                            state["endpoint"], state["region"], state["queue"], m["Body"], delay
                        )
            if copies:
                parsed["Messages"] = [*messages, *copies]
        if ok and state.get("kind") == "lost":
            state["kind"] = None
            self.plan.count("lost", op)
            raise ConnectionClosedError(endpoint_url="(injected fault: response lost)")

    def _journal(
        self,
        state: dict[str, Any],
        parsed: Any,
        note: str | None = None,
        refused: str | None = None,
    ) -> None:
        body = state.pop("journal", None)
        if body is None or not self.plan.journal:
            return
        with contextlib.suppress(ValueError):
            entry = _journal_entry(state["op"], json.loads(body), parsed)
            entry["t0"] = state.get("t0")
            entry["t1"] = _now_ms()
            entry["pid"] = os.getpid()
            if note:
                entry["note"] = note
            if refused:
                entry["refused"] = refused
            _append(self.plan.journal, entry)


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
    hooks = _Hooks(plan, is_async)
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
    "FaultPlan",
    "Rule",
    "install",
    "parse",
    "plan_for",
    "reset",
    "stats",
]
