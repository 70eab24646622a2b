"""Findings 1-3 and 8 of issue #16, reproduced against the servers on loopback:
`orchestrator dev`'s API, the `orchestrator dashboard` proxy, the moto
endpoint and the worker's metrics endpoint. Each attack is sent as a browser
or a raw client would send it, and each must now be refused with a JSON error
and write nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.dashboard.proxy import TOKEN_HEADER, DashboardProxy
from orchestrator.local import LocalStack
from orchestrator.local.aws import RESET_HEADER, MotoServer
from tests.helpers import ROOT
from tests.security._http import JSON, json_error, raw, request
from tests.security._state import CONFIGURED_HOST

CSRF_BODY = b'{"name":"greet","id":"csrf-1"}'


# --- 1. cross-site requests and DNS rebinding against `orchestrator dev` ----------------------
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_simple_cross_site_post_is_refused(
    sec_stack: LocalStack, unchanged, content_type
) -> None:
    # What fetch(..., {mode: "no-cors", headers: {"Content-Type": "text/plain"}}) sends,
    # minus the Origin header (an extension or a proxy may strip it): the type alone refuses.
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, body = request(
        sec_stack.api_url, "POST", "/workflows", headers=headers, body=CSRF_BODY
    )
    assert status == 415 and json_error(body)["code"] == "unsupported_media_type"
    unchanged()


def test_a_request_from_another_origin_is_refused(sec_stack: LocalStack, unchanged) -> None:
    evil = {"Origin": "https://evil.example", **JSON}
    status, _, body = request(sec_stack.api_url, "POST", "/workflows", headers=evil, body=CSRF_BODY)
    assert status == 403 and json_error(body)["code"] == "forbidden"
    for path in ("/workflows", "/workflows/x/cancel"):
        assert request(sec_stack.api_url, "POST", path, headers=evil, body=b"{}")[0] == 403
    assert request(sec_stack.api_url, "GET", "/workflows", headers={"Origin": "null"})[0] == 403
    unchanged()


def test_the_servers_own_origin_is_served(sec_stack: LocalStack) -> None:
    origin = {"Origin": sec_stack.api_url, **JSON}
    status, _, body = request(sec_stack.api_url, "POST", "/workflows", headers=origin, body=b"{}")
    assert status == 400 and "name" in json_error(body)["message"]  # reached the route


@pytest.mark.parametrize("host", ["rebind.attacker.example", "rebind.attacker.example:8000", ""])
def test_a_rebound_host_name_is_refused(sec_stack: LocalStack, host: str) -> None:
    status, _, body = request(sec_stack.api_url, "GET", "/workflows", headers={"Host": host})
    assert status == 403 and "Host" in json_error(body)["message"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_host_names_are_served(sec_stack: LocalStack, host: str) -> None:
    port = urlsplit(sec_stack.api_url).port
    assert (
        request(sec_stack.api_url, "GET", "/workers", headers={"Host": f"{host}:{port}"})[0] == 200
    )


def test_a_configured_host_name_is_served(sec_stack: LocalStack) -> None:
    host = {"Host": f"{CONFIGURED_HOST}:8000"}
    assert request(sec_stack.api_url, "GET", "/workers", headers=host)[0] == 200
    assert request(sec_stack.api_url, "GET", "/workers", headers={"Host": "other"})[0] == 403


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "\u00b2", "9" * 5000])
def test_a_malformed_content_length_is_a_400_not_a_dropped_connection(
    sec_stack: LocalStack, length: str, unchanged
) -> None:
    headers = {"Content-Length": length, **JSON}
    status, _, body = request(sec_stack.api_url, "POST", "/workflows", headers=headers, body=b"")
    assert status == 400 and "Content-Length" in json_error(body)["message"]
    unchanged()


def test_an_oversize_content_length_is_refused_unread(sec_stack: LocalStack) -> None:
    headers = {"Content-Length": str(10**10), **JSON}
    status, _, body = request(sec_stack.api_url, "POST", "/workflows", headers=headers)
    assert status == 413 and json_error(body)["code"] == "payload_too_large"


# --- 2. the dashboard proxy: a token, and no way to another host ------------------------------
@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An upstream that records every request it gets (path and headers)."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append({"method": self.command, "path": self.path, **dict(self.headers.items())})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_proxy_refuses_requests_without_its_token(recorder) -> None:
    url, seen = recorder
    proxy = DashboardProxy(url, auth="none", token="bearer-secret").start()
    try:
        status, _, body = request(proxy.url, "GET", "/workflows")
        assert status == 403 and "token" in json_error(body)["message"]
        assert request(proxy.url, "GET", "/", headers={TOKEN_HEADER: "guess"})[0] == 403
        assert seen == []  # the bearer token went nowhere
        assert (
            request(proxy.url, "GET", "/workflows", headers={TOKEN_HEADER: proxy.secret})[0] == 200
        )
        assert seen[-1]["Authorization"] == "Bearer bearer-secret"
        assert TOKEN_HEADER not in seen[-1]  # the proxy's own token is not forwarded
    finally:
        proxy.stop()


def test_the_token_in_the_url_becomes_a_strict_cookie(recorder) -> None:
    url, seen = recorder
    proxy = DashboardProxy(url, auth="none").start()
    try:
        status, headers, _ = request(proxy.url, "GET", f"/?token={proxy.secret}&x=1")
        assert status == 303 and headers["location"] == "/?x=1"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        name_value = cookie.split(";")[0]
        assert request(proxy.url, "GET", "/workflows", headers={"Cookie": name_value})[0] == 200
        assert seen[-1]["path"] == "/workflows"
    finally:
        proxy.stop()


@pytest.mark.parametrize("target", ["2/steal", "@evil.example/x", "\\\\x", "http://evil.example/"])
def test_the_proxy_cannot_be_pointed_at_another_host(recorder, target: str) -> None:
    # The reproduction: a proxy for http://127.0.0.1:1800 and a request line
    # "GET 2/steal" sent the bearer token to port 18002. Now the path must be a plain
    # absolute path, appended to the target's own scheme, host and port.
    url, seen = recorder
    proxy = DashboardProxy(url, auth="none", token="bearer-secret").start()
    try:
        host = urlsplit(proxy.url).netloc
        head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{TOKEN_HEADER}: {proxy.secret}\r\n"
        status, _, body = raw(proxy.url, (head + "Connection: close\r\n\r\n").encode())
        assert status == 400 and json_error(body)["code"] == "bad_input"
        assert seen == []
        assert proxy.target_url("/workflows") == url + "/workflows"
        # (http.server itself folds a leading "//" into "/"; the join refuses it anyway.)
        assert proxy.target_url("//evil.example/steal") is None
    finally:
        proxy.stop()


@pytest.mark.parametrize("length", ["\u00b2", "9" * 5000])
def test_the_proxy_answers_a_malformed_content_length_with_a_400(recorder, length: str) -> None:
    url, seen = recorder
    proxy = DashboardProxy(url, auth="none").start()
    try:
        headers = {TOKEN_HEADER: proxy.secret, **JSON, "Content-Length": length}
        status, _, body = request(proxy.url, "POST", "/workflows", headers=headers, body=b"")
        assert status == 400 and "Content-Length" in json_error(body)["message"]
        assert seen == []
    finally:
        proxy.stop()


def test_the_proxy_forwards_a_delete_and_refuses_a_method_no_server_has(recorder) -> None:
    url, seen = recorder
    proxy = DashboardProxy(url, auth="none").start()
    try:
        token = {TOKEN_HEADER: proxy.secret}
        assert request(proxy.url, "DELETE", "/schedules/nightly", headers=token)[0] == 200
        assert seen[-1]["method"] == "DELETE" and seen[-1]["path"] == "/schedules/nightly"
        for method in ("TRACE", "CONNECT", "BREW"):
            status, headers, body = request(proxy.url, method, "/", headers=token)
            assert status == 405 and json_error(body)["code"] == "method_not_allowed"
            assert headers["x-content-type-options"] == "nosniff"
        assert len(seen) == 1
    finally:
        proxy.stop()


def test_the_proxy_checks_host_and_origin(recorder) -> None:
    url, seen = recorder
    proxy = DashboardProxy(url, auth="none").start()
    try:
        token = {TOKEN_HEADER: proxy.secret}
        assert request(proxy.url, "GET", "/", headers={**token, "Host": "rebind.example"})[0] == 403
        evil = {**token, **JSON, "Origin": "https://evil.example"}
        assert request(proxy.url, "POST", "/workflows", headers=evil, body=b"{}")[0] == 403
        assert seen == []
    finally:
        proxy.stop()


# --- 3. the moto endpoint refuses browsers ----------------------------------------------------
def _scan(origin: str | None = None, signed: bool = False) -> tuple[bytes, dict[str, str]]:
    headers = {
        "X-Amz-Target": "DynamoDB_20120810.Scan",
        "Content-Type": "application/x-amz-json-1.0",
    }
    if origin:
        headers["Origin"] = origin
    if signed:
        headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=testing/20261126/us-east-1/dynamodb"
    return b'{"TableName": "x"}', headers


def test_moto_refuses_an_unsigned_request(sec_stack: LocalStack) -> None:
    assert sec_stack.moto is not None
    body, headers = _scan()
    status, _, reply = request(sec_stack.moto.url, "POST", "/", headers=headers, body=body)
    assert status == 403 and "SigV4" in json_error(reply)["message"]


def test_moto_refuses_a_browser_even_signed_and_sends_no_cors_headers(
    sec_stack: LocalStack,
) -> None:
    assert sec_stack.moto is not None
    body, headers = _scan(origin="http://localhost:3000", signed=True)
    status, reply_headers, _ = request(sec_stack.moto.url, "POST", "/", headers=headers, body=body)
    assert status == 403 and "access-control-allow-origin" not in reply_headers
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    status, reply_headers, _ = request(sec_stack.moto.url, "OPTIONS", "/", headers=preflight)
    assert status == 403 and "access-control-allow-origin" not in reply_headers


def _presign(stack: LocalStack, key: str, **edits: str) -> tuple[str, str]:
    """(path, query) of a presigned GET of `key` as the API makes one, then edited."""
    from urllib.parse import parse_qsl, urlencode

    url = stack.s3.generate_presigned_url(
        "get_object", Params={"Bucket": stack.settings.bucket, "Key": key}, ExpiresIn=900
    )
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(edits)
    return parts.path, urlencode(query)


def test_moto_serves_a_value_by_its_presigned_link_and_nothing_forged_or_wider(
    sec_stack: LocalStack,
) -> None:
    """A presigned link counts as signed only as the API hands them out: a GET of
    one value's object, its SigV4 signature checked, not expired. A forged
    signature, a listing of the bucket and another key are refused; no answer
    carries a CORS header."""
    from orchestrator.payloads import pointer_of

    assert sec_stack.moto is not None
    data = b"x" * 2000
    _, key = pointer_of(data)
    sec_stack.s3.put_object(Bucket=sec_stack.settings.bucket, Key=key, Body=data)
    sec_stack.s3.put_object(Bucket=sec_stack.settings.bucket, Key="other/secret", Body=b"s")
    path, query = _presign(sec_stack, key)
    status, headers, body = request(sec_stack.moto.url, "GET", f"{path}?{query}")
    assert status == 200 and body == data
    assert not any(h.startswith("access-control-") for h in headers)
    refused = [
        "{}?{}".format(*_presign(sec_stack, key, **{"X-Amz-Signature": "forged"})),
        "{}?{}".format(*_presign(sec_stack, key, **{"X-Amz-Expires": "999999"})),
        "{}?{}".format(*_presign(sec_stack, "other/secret")),
        f"/{sec_stack.settings.bucket}?{_presign(sec_stack, key)[1]}",  # the listing
    ]
    for target in refused:
        status, headers, body = request(sec_stack.moto.url, "GET", target)
        assert status == 403, target
        assert b"secret" not in body and data not in body


def test_moto_refuses_a_rebound_host(sec_stack: LocalStack) -> None:
    assert sec_stack.moto is not None
    body, headers = _scan(signed=True)
    headers["Host"] = "rebind.attacker.example"
    assert request(sec_stack.moto.url, "POST", "/", headers=headers, body=body)[0] == 403


def test_moto_reset_is_closed_outside_tests(sec_stack: LocalStack) -> None:
    dev = sec_stack.moto  # started as `orchestrator dev` starts it
    assert dev is not None
    assert request(dev.url, "POST", "/moto-api/reset")[0] == 403
    assert request(dev.url, "GET", "/moto-api/data.json")[0] == 403
    with pytest.raises(AssertionError):
        dev.reset()
    assert sec_stack.ddb.describe_table(TableName=sec_stack.settings.table)["Table"]


def test_moto_reset_in_tests_needs_the_servers_secret() -> None:
    server = MotoServer(allow_reset=True).start()
    try:
        assert request(server.url, "POST", "/moto-api/reset")[0] == 403
        assert request(server.url, "POST", "/moto-api/reset", headers={RESET_HEADER: "x"})[0] == 403
        server.reset()  # with its own secret
    finally:
        server.stop()


# --- 8. smaller: headers, OPTIONS and HEAD, the metrics endpoint -------------------------------
@pytest.mark.parametrize("path", ["/", "/workflows", "/dashboard/app.js", "/nope", "/openapi.json"])
def test_every_response_carries_the_security_headers(sec_stack: LocalStack, path: str) -> None:
    _, headers, _ = request(sec_stack.api_url, "GET", path)
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "BREW"])
def test_a_method_no_route_has_is_a_json_405_with_the_security_headers(
    sec_stack: LocalStack, method: str
) -> None:
    status, headers, body = request(sec_stack.api_url, method, "/workflows")
    assert status == 405 and json_error(body)["code"] == "method_not_allowed"
    assert headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in headers


def test_a_delete_with_a_body_of_another_type_is_a_415_and_deletes_nothing(
    sec_stack: LocalStack,
) -> None:
    from orchestrator import Client

    client = Client(sec_stack.api_url)
    client.create_schedule("keep-me", "greet", expression="rate(5 minutes)")
    try:
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = request(
            sec_stack.api_url, "DELETE", "/schedules/keep-me", headers=form, body=b"a=1"
        )
        assert status == 415 and json_error(body)["code"] == "unsupported_media_type"
        assert client.schedule("keep-me")["name"] == "keep-me"
    finally:
        client.delete_schedule("keep-me")


def test_options_and_head_are_answered(sec_stack: LocalStack) -> None:
    status, headers, body = request(sec_stack.api_url, "OPTIONS", "/workflows")
    assert status == 204 and headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert "access-control-allow-origin" not in headers
    status, headers, body = request(sec_stack.api_url, "OPTIONS", "/nowhere")
    assert status == 404 and json_error(body)["code"] == "not_found"
    status, headers, body = request(sec_stack.api_url, "HEAD", "/workflows")
    assert status == 200 and body == b"" and headers["content-type"].startswith("application/json")
    assert int(headers["content-length"]) > 0


def test_the_metrics_endpoint_refuses_a_rebound_host_and_a_web_page() -> None:
    from worker._metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.inc("orchestrator_runs_claimed_total", workflow="payroll")
    url = f"http://127.0.0.1:{metrics.serve(0)}"
    try:
        for headers in ({"Host": "rebind.attacker.example"}, {"Origin": "https://evil.example"}):
            status, _, body = request(url, "GET", "/metrics", headers=headers)
            assert status == 403 and b"payroll" not in body
        status, _, body = request(url, "GET", "/metrics")
        assert status == 200 and b"payroll" in body
    finally:
        metrics.close()


def test_the_metrics_endpoint_listens_on_loopback_by_default() -> None:
    from worker._metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.serve(0)
    try:
        assert metrics._server is not None
        assert metrics._server.server_address[0] == "127.0.0.1"
    finally:
        metrics._server.shutdown()
        metrics._server.server_close()


def test_the_dashboard_page_satisfies_its_own_policy(sec_stack: LocalStack) -> None:
    """The one inline script is allowed by its hash; no inline style is left."""
    import base64
    import hashlib
    import re

    _, headers, page = request(sec_stack.api_url, "GET", "/")
    for script in re.findall(rb"<script>(.*?)</script>", page, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
        assert f"'sha256-{digest}'" in headers["content-security-policy"]
    scripts = sorted(p.name for p in (ROOT / "orchestrator" / "dashboard").glob("*.js"))
    assert "app.js" in scripts and "workers.js" in scripts
    for name in scripts:  # every script the dashboard serves, not only the first
        status, _, js = request(sec_stack.api_url, "GET", f"/dashboard/{name}")
        assert status == 200, name
        assert b"style:" not in js and b"innerHTML" not in js, name
    assert json.loads(request(sec_stack.api_url, "GET", "/openapi.json")[2])["openapi"]
