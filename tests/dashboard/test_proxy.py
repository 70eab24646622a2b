"""`orchestrator dashboard`: the local proxy forwards the page and the API to
the (deployed) API with credentials added, and reports an unreachable API as
one JSON error."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from orchestrator.client import Client
from orchestrator.dashboard.proxy import TOKEN_HEADER, DashboardProxy
from orchestrator.local import LocalStack


def fetch(url: str, body: Any = None, *, token: str | None = None) -> tuple[int, str, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers[TOKEN_HEADER] = token
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server that records request headers and answers {}."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **dict(self.headers.items())})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_proxy_serves_the_page_and_the_api(stack: LocalStack) -> None:
    run = Client(stack.api_url).start("waiter", {"waits": 1})
    proxy = DashboardProxy(stack.api_url, auth="iam").start()
    try:
        status, content_type, body = fetch(proxy.url, token=proxy.secret)
        assert status == 200 and content_type.startswith("text/html")
        assert b"dashboard/app.js" in body
        status, content_type, _ = fetch(proxy.url + "dashboard/app.js", token=proxy.secret)
        assert status == 200 and content_type.startswith("text/javascript")
        status, _, body = fetch(proxy.url + "workflows?limit=5", token=proxy.secret)
        assert [w["id"] for w in json.loads(body)["workflows"]] == [run["id"]]
        status, _, body = fetch(
            proxy.url + f"workflows/{run['id']}/signals", {"name": "go"}, token=proxy.secret
        )
        assert status == 202 and json.loads(body)["signal"] == "go"
        status, _, body = fetch(proxy.url + "workflows/nope", token=proxy.secret)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    finally:
        proxy.stop()


def test_requests_are_signed_or_carry_the_token(recorder: tuple[str, list]) -> None:
    url, seen = recorder
    for kwargs in ({"auth": "iam"}, {"auth": "iam", "token": "t0ken"}, {"auth": "none"}):
        proxy = DashboardProxy(url + "/", **kwargs).start()
        try:
            assert fetch(proxy.url + "workflows?status=failed", token=proxy.secret)[0] == 200
        finally:
            proxy.stop()
    iam, jwt, none = seen
    assert iam["path"] == "/workflows?status=failed"
    assert iam["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert "/execute-api/aws4_request" in iam["Authorization"]
    assert jwt["Authorization"] == "Bearer t0ken"
    assert "Authorization" not in none


def test_an_unreachable_api_is_one_json_error() -> None:
    proxy = DashboardProxy("http://127.0.0.1:9", auth="none").start()
    try:
        status, _, body = fetch(proxy.url + "workflows", token=proxy.secret)
    finally:
        proxy.stop()
    assert status == 502
    assert "cannot reach the API at http://127.0.0.1:9" in json.loads(body)["error"]["message"]
