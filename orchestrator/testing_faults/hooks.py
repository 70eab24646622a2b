"""The botocore event hooks that carry out a fault plan on a client or a session
(`install` in the package registers them).

- ``before-call``: decide for the call; delay it (latency); fail it without
  sending (throttle, 5xx, conn: an error that outlived the SDK's retries).
- ``before-send``: fail one HTTP attempt inside the SDK's retry loop
  (``attempt.*``), with the error response the service would send: a JSON body
  for DynamoDB, SQS and Scheduler, an XML one for S3.
- ``needs-retry``: drop the answer of an applied call once, so the SDK sends it
  again (lost_retry).
- ``after-call``: journal the write, duplicate received SQS messages, lose the
  answer of an applied call (lost).

The error each service gives: DynamoDB throttles with
ProvisionedThroughputExceededException (400), SQS and Scheduler with
ThrottlingException (400), S3 with SlowDown (503); a 5xx is
InternalServerError (500), InternalError on S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any, cast

from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from .journal import _REFUSALS, _S3_OPS, _SQS_OPS, _WRITE_OPS, _journal_entry
from .plan import FaultPlan, append_line, now_ms

_CTX = "orchestrator_faults"  # key in botocore's per-call request context


def _op(event_name: str) -> str:
    parts = event_name.split(".")
    return f"{parts[1]}.{parts[2]}" if len(parts) >= 3 else event_name


def _code(kind: str, service: str) -> tuple[int, str]:
    if service == "s3":
        return (500, "InternalError") if kind == "5xx" else (503, "SlowDown")
    if kind == "5xx":
        return 500, "InternalServerError"
    if service == "dynamodb":
        return 400, "ProvisionedThroughputExceededException"
    return 400, "ThrottlingException"


def _error_body(service: str, code: str, message: str) -> tuple[dict[str, str], bytes]:
    """(headers, body) of an error response as `service` sends it."""
    if service == "s3":  # REST-XML
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>injected-fault</RequestId></Error>"
        )
        return {"Content-Type": "application/xml"}, body.encode()
    body = json.dumps({"__type": code, "message": message})
    return {"x-amzn-ErrorType": code, "Content-Type": "application/x-amz-json-1.0"}, body.encode()


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


def _size(params: Any) -> int | None:
    """The size of a request body: bytes, or the BytesIO botocore wraps them in."""
    body = params.get("body") if isinstance(params, dict) else None
    if isinstance(body, bytes | bytearray):
        return len(body)
    getbuffer = getattr(body, "getbuffer", None)
    return len(getbuffer()) if callable(getbuffer) else None


def _journaled(op: str) -> bool:
    if op.startswith("dynamodb."):
        return op.split(".")[1] in _WRITE_OPS
    return op in _SQS_OPS or op in _S3_OPS


class Hooks:
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
        if self.plan.journal and _journaled(op):
            if op in _S3_OPS:  # the body is the object: journal its key and size
                state["journal"] = {"url": str(params.get("url", "")), "bytes": _size(params)}
            else:
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
            state["t0"] = now_ms()  # after the delay: the request is about to go out
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
        service = op.split(".")[0]
        status, code = _code(kind, service)
        headers, body = _error_body(service, code, f"injected fault: {kind}")
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
            request = json.loads(body) if isinstance(body, str) else body
            entry = _journal_entry(state["op"], request, parsed)
            entry["t0"] = state.get("t0")
            entry["t1"] = now_ms()
            entry["pid"] = os.getpid()
            if note:
                entry["note"] = note
            if refused:
                entry["refused"] = refused
            append_line(self.plan.journal, entry)
