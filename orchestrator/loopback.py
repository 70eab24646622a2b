"""What a server on loopback checks before anything else: that the request
comes from the operator's own tools, not from a web page.

A page on any origin can make the browser send requests to 127.0.0.1
(cross-site request forgery), and a page whose DNS name is rebound to
127.0.0.1 can even read the answers (DNS rebinding). The local API, the
dashboard proxy and the moto endpoint all hold the operator's power, so each
refuses, with a JSON error:

- a Host header that is not a loopback name (localhost, 127.0.0.1, [::1]) or a
  name the operator configured: 403 (a rebound name is the attacker's);
- an Origin header, when present, other than the server's own origin
  (http://<the Host header>): 403 (browsers send Origin on every cross-site
  POST, and on cross-origin reads);
- a Content-Length that is not a number, or a chunked body: 400 / 411;
- a body over the server's limit: 413, without reading it.

The Content-Type check (bodies must be application/json, 415) belongs to the
API's routes (`orchestrator.api.app`), so it holds in Lambda too.

Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from .errors import (
    BadInputError,
    ForbiddenError,
    LengthRequiredError,
    OrchestratorError,
    PayloadTooLargeError,
)
from .safejson import is_ascii_count

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str

    @classmethod
    def of(cls, error: OrchestratorError) -> Refusal:
        """The refusal for one of the project's errors: its status and code."""
        return cls(error.http_status, error.code, error.message)

    def body(self) -> bytes:
        return json.dumps({"error": {"code": self.code, "message": self.message}}).encode()


def host_name(host: str) -> str:
    """The name part of a Host header value (no port, no IPv6 brackets), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def check_request(
    headers: Mapping[str, str] | Message,
    *,
    allowed_hosts: Iterable[str] = (),
    max_body: int | None = None,
) -> Refusal | None:
    """The refusal for a request with these headers, or None to serve it.
    `headers` must be case-insensitive (http.client's message, or lower-cased keys)."""
    host = headers.get("Host") or headers.get("host") or ""
    allowed = LOOPBACK_HOSTS | {h.lower() for h in allowed_hosts}
    if host_name(host) not in allowed:
        return Refusal.of(
            ForbiddenError(f"Host {host[:100]!r} is not this server's (loopback only)")
        )
    origin = headers.get("Origin") or headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() != f"http://{host.strip().lower()}":
        return Refusal.of(
            ForbiddenError(f"requests from origin {origin[:100]!r} are refused (not this server)")
        )
    if headers.get("Transfer-Encoding") or headers.get("transfer-encoding"):
        return Refusal.of(LengthRequiredError("send a Content-Length, not a chunked body"))
    length = headers.get("Content-Length") or headers.get("content-length")
    if length is not None:
        if not is_ascii_count(length.strip()):
            return Refusal.of(BadInputError(f"Content-Length {length[:40]!r} is not a number"))
        if max_body is not None and int(length) > max_body:
            return Refusal.of(PayloadTooLargeError(f"request body is over {max_body} bytes"))
    return None


def error_reply(handler: Any, code: int, message: str | None, extra: Mapping[str, str]) -> None:
    """What a loopback server's `send_error` sends: the JSON error shape with
    `extra` headers (the security headers), never http.server's HTML page. A
    method no server has (TRACE, CONNECT, anything else: http.server's 501) is
    405."""
    status = 405 if code == 501 else code
    error = {405: ("method_not_allowed", "this server has no such method")}.get(
        status, ("bad_request" if status < 500 else "internal", message or "refused")
    )
    body = json.dumps({"error": {"code": error[0], "message": error[1]}}).encode()
    handler.close_connection = True
    handler.send_response(status)
    for k, v in {"Content-Type": "application/json", **extra}.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def content_length(headers: Mapping[str, str] | Message) -> int:
    """The body length of a request `check_request` accepted."""
    return int((headers.get("Content-Length") or "0").strip() or 0)


__all__ = [
    "LOOPBACK_HOSTS",
    "Refusal",
    "check_request",
    "content_length",
    "error_reply",
    "host_name",
]
