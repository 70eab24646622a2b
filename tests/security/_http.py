"""Raw HTTP for the security tests: exact request lines and headers (a forged
Host, a malformed Content-Length), which urllib would not send."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit


def raw(url: str, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as is to the server of `url`; (status, headers, body).
    Status 0: the server closed the connection without an answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        resp = http.client.HTTPResponse(sock, method=request.split(b" ", 1)[0].decode())
        try:
            resp.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return 0, {}, b""
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def request(
    url: str,
    method: str = "GET",
    path: str = "/",
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    host = urlsplit(url).netloc
    all_headers = {"Host": host, "Connection": "close", **(headers or {})}
    if body or method in ("POST", "PUT"):
        all_headers.setdefault("Content-Length", str(len(body)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in all_headers.items()
    )
    return raw(url, head.encode("latin-1") + b"\r\n" + body)


def json_error(body: bytes) -> dict[str, Any]:
    """The {"error": {"code", "message"}} of a refusal (fails the test otherwise)."""
    data = json.loads(body)
    assert set(data) == {"error"} and {"code", "message"} <= set(data["error"]), data
    return dict(data["error"])


JSON = {"Content-Type": "application/json"}
