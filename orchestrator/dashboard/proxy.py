"""A local proxy that opens a deployed API's dashboard in a browser.

The deployed API requires authentication on every route, the dashboard's
included. A browser cannot sign requests with SigV4, and sends no bearer
token on its own, so `orchestrator dashboard` serves on localhost and forwards
every request (the page, its files and the JSON API) to the deployed API,
signed with the standard AWS credential chain (auth "iam") or with a bearer
token (a JWT authorizer). The page and the API it reads are the deployed ones;
the proxy adds credentials and nothing else.

It listens on loopback only, and whoever can reach it acts with your
credentials, so it trusts no one by position alone:

- its URL carries a random token (printed once, as Jupyter does): the first
  request with `?token=` sets a cookie (HttpOnly, SameSite=Strict) and every
  request without the cookie, the query parameter or the header
  `X-Orchestrator-Proxy-Token` is refused (403);
- Host and Origin are checked as by every local server (`orchestrator.loopback`), so
  neither a cross-site page nor a DNS-rebound name gets through;
- the path must start with a single "/" and is appended to the target's own
  scheme, host and base path: no request line can send the credentials to
  another host or port.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..api.edge import security_headers
from ..errors import BadInputError
from ..loopback import check_request, content_length, error_reply

_FORWARDED_HEADERS = ("Content-Type", "Accept")
TOKEN_HEADER = "X-Orchestrator-Proxy-Token"
MAX_BODY_BYTES = 1024 * 1024


class DashboardProxy:
    """Forward http://127.0.0.1:<port>/<path> to <api_url>/<path>, with credentials."""

    def __init__(
        self,
        api_url: str,
        *,
        auth: str = "iam",
        token: str | None = None,
        port: int = 0,
        timeout: float = 30.0,
    ) -> None:
        if auth not in ("iam", "none"):
            raise BadInputError(f"auth must be 'iam' or 'none', not {auth!r}")
        target = urlsplit(api_url.rstrip("/"))
        if target.scheme not in ("http", "https") or not target.netloc:
            raise BadInputError(f"the API URL must be http(s)://host[/path], not {api_url!r}")
        self.target = api_url.rstrip("/")
        self._origin = f"{target.scheme}://{target.netloc}"
        self._base_path = target.path.rstrip("/")
        self.secret = secrets.token_urlsafe(24)
        self.auth = auth
        self.token = token
        self.timeout = timeout
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def open_url(self) -> str:
        """The URL to open once in a browser: it carries the token."""
        return f"{self.url}?token={self.secret}"

    @property
    def _cookie(self) -> str:
        return f"orchestrator_proxy_{self._server.server_address[1]}"

    def target_url(self, path: str) -> str | None:
        """The deployed URL for a request path, or None for a path that is not
        a plain absolute path (it could move the request to another host)."""
        if not path.startswith("/") or path.startswith("//") or "\\" in path:
            return None
        if any(ord(c) < 0x21 or c == "@" for c in path.partition("?")[0]):
            return None
        return self._origin + self._base_path + path

    def authorized(self, headers: Any, query_token: str | None) -> bool:
        offered = [headers.get(TOKEN_HEADER) or "", query_token or ""]
        for part in (headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self._cookie:
                offered.append(value)
        return any(o and hmac.compare_digest(o, self.secret) for o in offered)

    def start(self) -> DashboardProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="dashboard-proxy"
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) of the deployed API's answer."""
        from ..client import _sign

        url = self.target_url(path)
        if url is None:
            return _refused(400, "bad_input", "the request path must start with a single '/'")
        out = {k: v for k, v in headers.items() if k in _FORWARDED_HEADERS}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        elif self.auth == "iam":
            out = _sign(method, url, body, out)
        request = urllib.request.Request(url, data=body, method=method, headers=out)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            message = f"the proxy cannot reach the API at {self.target}: {reason}"
            body_out = json.dumps({"error": {"code": "unavailable", "message": message}})
            return 502, "application/json", body_out.encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for k, v in (headers | security_headers()).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _serve(self) -> None:
                refusal = check_request(self.headers, max_body=MAX_BODY_BYTES)
                if refusal is not None:
                    self.close_connection = True
                    self._send(refusal.status, _JSON, refusal.body())
                    return
                path, _, query = self.path.partition("?")
                params = parse_qsl(query, keep_blank_values=True)
                query_token = next((v for k, v in params if k == "token"), None)
                if not proxy.authorized(self.headers, query_token):
                    self.close_connection = True
                    message = "open the URL the proxy printed (it carries the token)"
                    self._send(403, _JSON, _error(403, "forbidden", message))
                    return
                if query_token is not None:
                    # Trade the token in the URL for a cookie, and drop it from the URL.
                    rest = urlencode([(k, v) for k, v in params if k != "token"])
                    cookie = f"{proxy._cookie}={proxy.secret}; HttpOnly; SameSite=Strict; Path=/"
                    location = path + (f"?{rest}" if rest else "")
                    self._send(303, {"Location": location, "Set-Cookie": cookie}, b"")
                    return
                length = content_length(self.headers)
                body = self.rfile.read(length) if length else None
                status, content_type, data = proxy.forward(
                    self.command, self.path, dict(self.headers.items()), body
                )
                self._send(status, {"Content-Type": content_type} if content_type else {}, data)

            # Every method the API has goes on to it (it answers 405 for a route
            # that lacks one); any other method is refused here.
            do_GET = do_HEAD = do_OPTIONS = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                error_reply(self, code, message, security_headers())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


_JSON = {"Content-Type": "application/json"}


def _error(status: int, code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _refused(status: int, code: str, message: str) -> tuple[int, str, bytes]:
    return status, "application/json", _error(status, code, message)


__all__ = ["TOKEN_HEADER", "DashboardProxy"]
