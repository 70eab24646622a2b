"""What every API request and response passes through, in Lambda and locally.

`serve(app, event, context)` is the one entry: the Lambda handler and the
local server (`orchestrator.local.http`) both call it, so they answer alike.

- HEAD is answered as the GET of the same path (the transport drops the body); OPTIONS with
  204 and an `Allow` header listing the methods of the path (no CORS headers:
  the API is not meant to be called from other origins' pages).
- An exception that escapes the routes' handlers (a bug, or something the
  resolver itself raised) becomes a logged 500 JSON error; nothing is re-raised,
  so Lambda never reports an invocation error without a request log line.
- An answer above Lambda's response limit (`pages.MAX_RESPONSE_BYTES`, measured
  as Lambda sends it) becomes a 500 `response_too_large` that says so, instead of
  a failed invocation; the routes are built never to reach it (api/pages.py).
- Every response carries the security headers below: a Content-Security-Policy
  that allows only the dashboard's own files (and its one inline script, by
  hash), `nosniff`, `frame-ancestors 'none'` and no referrer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from .pages import MAX_RESPONSE_BYTES

log = logging.getLogger(__name__)


@cache
def _inline_script_hashes() -> str:
    from ..dashboard import page

    scripts = re.findall(r"<script>(.*?)</script>", page(), re.DOTALL)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in scripts
    )


@cache
def security_headers() -> dict[str, str]:
    csp = (
        "default-src 'none'; "
        f"script-src 'self' {_inline_script_hashes()}; "
        "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def error_result(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": {"code": code, "message": message}}),
        "isBase64Encoded": False,
    }


def allowed_methods(path: str) -> list[str]:
    from .app import ROUTES

    bare = path.removeprefix("/api")
    methods = {m for m, pattern in ROUTES if pattern.fullmatch(bare)}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"}) if methods else []


def _method(event: dict[str, Any]) -> str:
    return str(event.get("requestContext", {}).get("http", {}).get("method", "")).upper()


def serve(app: APIGatewayHttpResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The API's answer to one API Gateway (payload 2.0) event, never raising."""
    method = _method(event)
    try:
        if method == "OPTIONS":
            allowed = allowed_methods(str(event.get("rawPath", "")))
            result = (
                {"statusCode": 204, "headers": {"Allow": ", ".join(allowed)}, "body": ""}
                if allowed
                else error_result(404, "not_found", f"no route for {event.get('rawPath')}")
            )
        elif method == "HEAD":
            as_get = {**event, "body": None, "isBase64Encoded": False}
            as_get["requestContext"] = {
                **event["requestContext"],
                "http": {**event["requestContext"]["http"], "method": "GET"},
            }
            # The body stays: the transport (API Gateway, the local server) sends
            # the headers only, with the GET's Content-Length.
            result = dict(app.resolve(as_get, context))
        else:
            result = dict(app.resolve(event, context))
    except Exception:
        log.exception("unhandled error in the API")
        result = error_result(500, "internal", "internal error")
    headers: dict[str, str] = dict(result.get("headers") or {})  # type: ignore[arg-type]
    for name, value in security_headers().items():
        headers.setdefault(name, value)
    result["headers"] = headers
    size = len(json.dumps(result))
    if size > MAX_RESPONSE_BYTES:
        # Bounded by construction (api/pages.py); were an answer past Lambda's limit
        # anyway, Lambda would fail the invocation and API Gateway answer a bare 502.
        log.error("an answer of %d bytes was refused: above %d", size, MAX_RESPONSE_BYTES)
        message = (
            f"the answer would be {size:,} bytes, above the API's response limit "
            f"(Lambda's) of {MAX_RESPONSE_BYTES:,} bytes; ask for a smaller page (limit=)"
        )
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = "application/json"
        result = {**error_result(500, "response_too_large", message), "headers": headers}
    return result


__all__ = ["allowed_methods", "error_result", "security_headers", "serve"]
