"""A local proxy that opens a deployed API's dashboard in a browser.

The deployed API requires authentication on every route, the dashboard's
included. A browser cannot sign requests with SigV4, and sends no bearer
token on its own, so `orchestrator dashboard` serves on localhost and forwards
every request (the page, its files and the JSON API) to the deployed API,
signed with the standard AWS credential chain (auth "iam") or with a bearer
token (a JWT authorizer). The page and the API it reads are the deployed ones;
the proxy adds credentials and nothing else.

It listens on loopback only: whoever can reach it acts with your credentials.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import BadInputError

_FORWARDED_HEADERS = ("Content-Type", "Accept")


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
        self.target = api_url.rstrip("/")
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

        url = self.target + path
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

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status, content_type, data = proxy.forward(
                    self.command, self.path, dict(self.headers.items()), body
                )
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


__all__ = ["DashboardProxy"]
