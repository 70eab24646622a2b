"""A moto server on loopback whose DynamoDB is atomic.

moto's DynamoDB lets concurrent conditional writes race (two winners of one
conditional update were measured in about 4% of 16-way rounds). AWS
guarantees one winner, and the lease protocol relies on it, so this server
runs DynamoDB requests one at a time, with the response body produced inside
the lock. SQS and Scheduler requests stay concurrent (long polls must not
block DynamoDB).

It holds everything a run holds and checks no signature, so it refuses what a
web page could send (`_BrowserGuard`): a request with an Origin header (a
browser's; this also ends moto's CORS answers), one whose Host is not a
loopback name (DNS rebinding), one not signed with SigV4 (boto3 always signs;
a page's `fetch` does not; a presigned link to a large value counts as signed
only as the API hands them out: a GET of one value's object, its signature
checked, not expired), and `/moto-api/` (reset, state dumps) unless the
server was started with `allow_reset=True` (tests), and then only with the
server's own secret header. moto's CORS headers are taken off every answer.

moto's long poll is woken by a send but not by a visibility change: a message
made visible again (a worker handing back a message for a name it does not
serve) would wait up to a second for a poll already waiting, where AWS hands it
over at once. After each ChangeMessageVisibility this server wakes the polls.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from .. import resources as r
from ..errors import ForbiddenError
from ..loopback import Refusal, check_request


class _SerializedDynamoDB:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("AmazonSQS.ChangeMessageVisibility"):
            result = list(self._app(environ, start_response))
            _wake_long_polls()
            return result
        if not target.startswith("DynamoDB"):
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        with self._lock:
            result = self._app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
        return [body]


RESET_HEADER = "X-Orchestrator-Reset-Token"
SHUTDOWN_POLL_S = 0.05  # how often the serving loop checks for a shutdown


def _wake_long_polls() -> None:
    from moto.sqs.models import sqs_backends

    for _, _, backend in sqs_backends.iter_backends():
        for queue in list(getattr(backend, "queues", {}).values()):
            with queue._messages_lock:
                queue._messages_lock.notify_all()


LOCAL_SECRET_KEY = "testing"  # the local stack's credentials (`stack.LOCAL_ENV`)
_VALUE_PATH = re.compile(
    r"/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/" + re.escape(r.VALUE_KEY_PREFIX) + "[0-9a-f]{64}"
)


def _presigned_get(environ: dict[str, Any]) -> bool:
    """A presigned link to a large value, as the API hands them out: a GET of one
    value's object (nothing else: no listing, no other key), signed in its query
    with the stack's credentials (SigV4, the signature checked), not expired."""
    path = environ.get("PATH_INFO", "")
    if environ.get("REQUEST_METHOD") != "GET" or not _VALUE_PATH.fullmatch(path):
        return False
    query = environ.get("QUERY_STRING", "")
    params = parse_qsl(query, keep_blank_values=True)
    d = dict(params)
    try:
        if d["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256" or d["X-Amz-SignedHeaders"] != "host":
            return False
        signed_at = datetime.strptime(d["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if signed_at.timestamp() + int(d["X-Amz-Expires"]) < time.time():
            return False  # expired
        scope = d["X-Amz-Credential"].split("/", 1)[1]
        date, region, service, _ = scope.split("/")
    except (KeyError, ValueError):
        return False
    rest = sorted((k, v) for k, v in params if k != "X-Amz-Signature")
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in rest)
    host = environ.get("HTTP_HOST", "")
    canonical = "\n".join(
        ["GET", path, canonical_query, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256", d["X-Amz-Date"], scope, digest])
    key = ("AWS4" + LOCAL_SECRET_KEY).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, d.get("X-Amz-Signature", ""))


class _BrowserGuard:
    def __init__(self, app: Any, reset_token: str | None) -> None:
        self._app = app
        self._reset_token = reset_token

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        headers = {
            k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        refusal = check_request(headers)
        path = environ.get("PATH_INFO", "")
        if refusal is None and path.startswith("/moto-api"):
            offered = environ.get("HTTP_" + RESET_HEADER.upper().replace("-", "_"), "")
            if not (self._reset_token and hmac.compare_digest(offered, self._reset_token)):
                refusal = Refusal.of(ForbiddenError("the moto control API is closed here"))
        elif (
            refusal is None
            and not environ.get("HTTP_AUTHORIZATION", "").startswith("AWS4-HMAC-SHA256 ")
            and not _presigned_get(environ)
        ):
            refusal = Refusal.of(ForbiddenError("requests must be signed with SigV4"))
        if refusal is None:

            def no_cors(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                # moto answers every request with CORS headers; this server sends
                # none (a page has no business reading it).
                kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
                return start_response(status, kept, *exc)

            return self._app(environ, no_cors)  # type: ignore[no-any-return]
        body = refusal.body()
        start_response(
            f"{refusal.status} Refused",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


class _Hold:
    """The outermost WSGI layer: counts the requests inside; held, it answers
    every new one 503 with `Connection: close` (the SDKs retry it, on a new
    connection), so that a snapshot taken then misses no acknowledged write."""

    BODY = b'{"__type":"ServiceUnavailable","message":"the stack is stopping"}'

    def __init__(self, app: Any) -> None:
        self._app = app
        self._held = False
        self._inside = 0
        self._cond = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._cond:
            if self._held:
                start_response(
                    "503 Service Unavailable",
                    [
                        ("Content-Type", "application/x-amz-json-1.0"),
                        ("Content-Length", str(len(self.BODY))),
                        ("Connection", "close"),
                    ],
                )
                return [self.BODY]
            self._inside += 1
        try:
            return list(self._app(environ, start_response))  # the whole answer, inside
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()

    def hold(self, timeout: float) -> None:
        with self._cond:
            self._held = True
            if not self._cond.wait_for(lambda: self._inside == 0, timeout):
                raise RuntimeError(f"{self._inside} request(s) still inside after {timeout} s")


class MotoServer:
    """Threaded moto server; `url` is its endpoint. `reset()` clears all state
    (only with `allow_reset=True`: tests). `hold()` stops taking requests and
    waits for those inside (the dev stack's last snapshot is taken then)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_reset: bool = False,
        middleware: Callable[[Any], Any] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        # Wraps the whole WSGI application before the server takes its first
        # request (tests: a gate that holds requests back across a restart).
        self._middleware = middleware
        self._reset_token = secrets.token_urlsafe(16) if allow_reset else None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._hold: _Hold | None = None

    def _serve(self) -> None:
        assert self._server is not None
        # A short poll: `stop` (shutdown) waits for the loop's next turn.
        self._server.serve_forever(poll_interval=SHUTDOWN_POLL_S)

    def start(self) -> MotoServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app: Any = _BrowserGuard(
            _SerializedDynamoDB(DomainDispatcherApplication(create_backend_app)),
            self._reset_token,
        )
        self._hold = _Hold(app)
        app = self._hold
        if self._middleware is not None:
            app = self._middleware(app)
        self._server = make_server(
            self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._serve, daemon=True, name="moto")
        self._thread.start()
        return self

    def hold(self, timeout: float = 60.0) -> None:
        """Answer every new request 503 from now on, and return once the requests
        already inside have been answered."""
        assert self._hold is not None, "start() first"
        self._hold.hold(timeout)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def reset(self) -> None:
        import urllib.request

        assert self._reset_token, "this server was started without allow_reset=True"
        headers = {RESET_HEADER: self._reset_token}
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", headers=headers)
        ).read()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
