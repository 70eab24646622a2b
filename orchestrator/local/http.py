"""Serve the API's Lambda resolver on localhost: each HTTP request becomes an
API Gateway HTTP API (payload 2.0) event, and the handler's result becomes the
HTTP response. The route code that runs is the code that runs in Lambda."""

from __future__ import annotations

import base64
import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from ..api.app import MAX_BODY_BYTES
from ..api.edge import security_headers, serve
from ..loopback import check_request, content_length, error_reply

DRAIN_MAX_BYTES = 8 * 1024 * 1024  # a refused body up to this size is read and dropped
SHUTDOWN_POLL_S = 0.05  # how often the serving loop checks for a shutdown
LOCAL_API_CONCURRENCY = 8  # requests served at once, each in a resolver of its own


class _Context:
    function_name = "orchestrator-api-local"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:orchestrator-api-local"
    aws_request_id = "local"


def to_event(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    parts = urlsplit(raw_path)
    query: dict[str, str] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    try:
        # As API Gateway does, a body that is not text travels base64-encoded.
        text, b64 = body.decode(), False
    except UnicodeDecodeError:
        text, b64 = base64.b64encode(body).decode(), True
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text,
        "isBase64Encoded": b64,
    }


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when many clients call
    # at once (tests, benchmarks, bursts of starts); API Gateway would queue them.
    request_queue_size = 128


class Resolvers:
    """Resolvers to serve requests with, one request at a time each, as Lambda
    execution environments are: Powertools keeps the request (`current_event`,
    the route's arguments) on the resolver itself, so two threads in one
    resolver would read each other's (a dashboard loading its scripts at once
    got a route without its path argument). A factory makes up to `size` of
    them, so a long request (a bulk call, a backfill) does not hold the reads
    behind it, as concurrent Lambda environments do not; a single resolver
    serves one request at a time."""

    def __init__(
        self, app: APIGatewayHttpResolver | Callable[[], APIGatewayHttpResolver], size: int
    ) -> None:
        self._factory = None if isinstance(app, APIGatewayHttpResolver) else app
        self._free: queue.LifoQueue[APIGatewayHttpResolver] = queue.LifoQueue()
        self._made = 0
        self._size = 1 if self._factory is None else size
        self._lock = threading.Lock()
        if isinstance(app, APIGatewayHttpResolver):
            self._free.put(app)
            self._made = 1

    @contextlib.contextmanager
    def take(self) -> Iterator[APIGatewayHttpResolver]:
        resolver = None
        with self._lock:
            if self._free.empty() and self._made < self._size and self._factory is not None:
                self._made += 1
                resolver = self._factory()
        if resolver is None:
            resolver = self._free.get()
        try:
            yield resolver
        finally:
            self._free.put(resolver)


class ApiServer:
    """The API on loopback. Requests pass `guard.check_request` first (Host,
    Origin, Content-Length); `allowed_hosts` adds names besides loopback ones.
    `app`: a resolver (one request at a time), or a factory of them (up to
    `concurrency` requests at a time, each in a resolver of its own)."""

    def __init__(
        self,
        app: APIGatewayHttpResolver | Callable[[], APIGatewayHttpResolver],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allowed_hosts: Iterable[str] = (),
        concurrency: int = LOCAL_API_CONCURRENCY,
    ) -> None:
        resolvers = Resolvers(app, concurrency)
        hosts = tuple(allowed_hosts)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _drain(self) -> None:
                """Read and drop a refused body of at most DRAIN_MAX_BYTES (an HTTP
                client reads the answer only after it has sent its body)."""
                try:
                    left = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    return
                if left > DRAIN_MAX_BYTES:
                    return
                while left > 0:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        return
                    left -= len(chunk)

            def _serve(self) -> None:
                refusal = check_request(
                    self.headers, allowed_hosts=hosts, max_body=MAX_BODY_BYTES + 1024
                )
                if refusal is not None:
                    if refusal.status == 413:
                        self._drain()  # a client still sending would get a broken pipe
                    self.close_connection = True
                    headers = {"Content-Type": "application/json", "Connection": "close"}
                    self._reply(refusal.status, headers | security_headers(), refusal.body())
                    return
                length = content_length(self.headers)
                body = self.rfile.read(length) if length else b""
                event = to_event(self.command, self.path, dict(self.headers.items()), body)
                with resolvers.take() as resolver:
                    result = serve(resolver, event, _Context())
                payload = result.get("body") or ""
                data = (
                    base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
                )
                self.send_response(result.get("statusCode", 200))
                for k, v in (result.get("headers") or {}).items():
                    self.send_header(k, v)
                for k, values in (result.get("multiValueHeaders") or {}).items():
                    for v in values:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_OPTIONS = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                error_reply(self, code, message, security_headers())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._serve, daemon=True, name="api")

    def _serve(self) -> None:
        # A short poll: `stop` (shutdown) waits for the loop's next turn.
        self._server.serve_forever(poll_interval=SHUTDOWN_POLL_S)

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
