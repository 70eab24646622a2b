"""The fault plan: what to inject, how often, and the random decisions for each
call and each HTTP attempt; and `parse`, which reads the spec (JSON or
``key=value`` text) into a plan. The spec's keys are documented in the package
docstring (`orchestrator/testing_faults/__init__.py`).

A plan draws from one random sequence (its ``seed``) under one lock, so every
client that shares a plan shares the sequence. Standard library and botocore
only.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import resources as r

ENV_FAULTS = r.ENV_FAULTS
FAILURE_KINDS = ("throttle", "5xx", "conn", "lost", "lost_retry")
KINDS = (*FAILURE_KINDS, "latency", "duplicate", "duplicate_late")
ATTEMPT_KINDS = ("throttle", "5xx", "conn")
# Services whose calls can get rates of their own (``s3.5xx``, ``s3.attempt.throttle``).
SERVICES = ("dynamodb", "sqs", "s3", "scheduler")
_SQS_ONLY = ("duplicate", "duplicate_late")  # deliveries of received messages


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
    # Per service: {"s3": {"5xx": 0.05, "attempt.throttle": 0.1}}. A kind named
    # here replaces the general rate of that kind for calls to that service.
    service_rates: dict[str, dict[str, float]] = field(default_factory=dict)
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
        self.rates, attempt = self._split(self.rates)
        self.attempt_rates = {**attempt, **self.attempt_rates}
        for kind in self.attempt_rates:
            if kind not in ATTEMPT_KINDS:
                raise ValueError(f"attempt.{kind} is not a fault kind; known: throttle, 5xx, conn")
        # The rates each service's calls get: the general ones, with its own on top.
        self._call: dict[str, dict[str, float]] = {}
        self._attempt: dict[str, dict[str, float]] = {}
        for service, table in self.service_rates.items():
            if service not in SERVICES:
                raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
            calls: dict[str, float] = {}
            attempts: dict[str, float] = {}
            for key, rate in table.items():
                kind = key.removeprefix("attempt.")
                if key.startswith("attempt.") and kind in ATTEMPT_KINDS:
                    attempts[kind] = rate
                elif key in KINDS and (key not in _SQS_ONLY or service == "sqs"):
                    calls[key] = rate
                else:
                    raise ValueError(f"{service}.{key} is not a fault kind of {service} calls")
            calls, moved = self._split(calls)
            self._call[service] = {**self.rates, **calls}
            self._attempt[service] = {**self.attempt_rates, **moved, **attempts}
        if self.duplicate_mode not in ("resend", "copy"):
            raise ValueError("duplicate_mode is 'resend' or 'copy'")
        self._any_attempt = any(self.attempt_rates.values()) or any(
            any(t.values()) for t in self._attempt.values()
        )
        self.rng = random.Random(self.seed)
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.calls = 0
        self._senders: dict[tuple[str, str], Any] = {}  # plain SQS clients for re-sends

    def _split(self, rates: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """(per-call rates, per-attempt rates): with scope=attempt, throttle, 5xx
        and conn are per attempt."""
        if self.scope != "attempt":
            return dict(rates), {}
        calls = {k: v for k, v in rates.items() if k not in ATTEMPT_KINDS}
        return calls, {k: v for k, v in rates.items() if k in ATTEMPT_KINDS}

    def call_rates(self, op: str) -> dict[str, float]:
        """The per-call rates for calls of `op` (``service.Operation``)."""
        return self._call.get(op.partition(".")[0], self.rates)

    def attempt_rates_for(self, op: str) -> dict[str, float]:
        return self._attempt.get(op.partition(".")[0], self.attempt_rates)

    # --- decisions (under the lock) -----------------------------------------------------
    def _selected(self, op: str) -> bool:
        return any(fnmatch.fnmatchcase(op, p) for p in self.ops) and not any(
            fnmatch.fnmatchcase(op, p) for p in self.exclude
        )

    def _roll(self, kind: str, rates: dict[str, float]) -> bool:
        rate = rates.get(kind, 0.0)
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
            rates = self.call_rates(op)
            delay = self._latency() if self._roll("latency", rates) else 0.0
            for kind in FAILURE_KINDS:
                if kind == "lost_retry" and op.endswith(".TransactWriteItems"):
                    continue
                if self._roll(kind, rates):
                    return kind, delay
            return None, delay

    def decide_attempt(self, op: str) -> str | None:
        if not self._any_attempt:
            return None
        with self.lock:
            if not self._selected(op):
                return None
            rates = self.attempt_rates_for(op)
            for kind in ATTEMPT_KINDS:
                if self._roll(kind, rates):
                    return kind
            return None

    def _latency(self) -> float:
        lo, hi = self.latency_ms
        return self.rng.uniform(lo, hi) / 1000

    def duplicates(self, messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], int]]:
        """(kind, message, delay seconds) for each received message to deliver again."""
        rates = self.call_rates("sqs.ReceiveMessage")
        if not (rates.get("duplicate") or rates.get("duplicate_late")):
            return []
        out: list[tuple[str, dict[str, Any], int]] = []
        with self.lock:
            for m in messages:
                if self._roll("duplicate", rates):
                    out.append(("duplicate", m, 0))
                elif self._roll("duplicate_late", rates):
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
            line = {"t": now_ms(), "pid": os.getpid(), "kind": kind, "op": op, **detail}
            append_line(self.log, line)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def append_line(path: str, record: dict[str, Any]) -> None:
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
    by_service: dict[str, dict[str, float]] = {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        service, dot, kind = key.partition(".")
        if key in KINDS:
            rates[key] = _rate(key, value)
        elif key.startswith("attempt."):
            attempt[key.split(".", 1)[1]] = _rate(key, value)
        elif key == "attempt" and isinstance(value, dict):
            attempt.update({k: _rate(f"attempt.{k}", v) for k, v in value.items()})
        elif dot and service in SERVICES:
            by_service.setdefault(service, {})[kind] = _rate(key, value)
        elif key in SERVICES and isinstance(value, dict):
            table = by_service.setdefault(key, {})
            table.update({k: _rate(f"{key}.{k}", v) for k, v in value.items()})
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
    return FaultPlan(rates=rates, attempt_rates=attempt, service_rates=by_service, **options)


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
