"""The local API server answers concurrent requests each with its own answer.
Powertools keeps a request's event and route arguments on the resolver, so
the server passes one request at a time through it, as a Lambda execution
environment does (`orchestrator/local/http.py`). A dashboard loads its scripts
at once; before the lock, one of them sometimes got another request's route."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from orchestrator.client import Client
from orchestrator.dashboard import asset


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.status, resp.read()


def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, resp.read()


def test_concurrent_requests_each_get_their_own_answer(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Widen the window between a request's route arguments being set on the
    # resolver and its handler reading them: without the server's lock, another
    # request lands in it (the interleaving, forced rather than hoped for).
    original = APIGatewayHttpResolver.append_context

    def slow_append(self: Any, **context: Any) -> None:
        original(self, **context)
        time.sleep(0.002)

    monkeypatch.setattr(APIGatewayHttpResolver, "append_context", slow_append)
    api = stack.api_url
    run_id = Client(api).start("greet", {"name": "Ada"}, id="concurrent-0")["id"]
    found = asset("kit.js")
    assert found is not None
    script = found[1].encode() if isinstance(found[1], str) else found[1]

    def one(i: int) -> str | None:
        """A mismatch, described, or None."""
        kind = i % 3
        try:
            if kind == 0:
                status, data = _get(f"{api}/dashboard/kit.js")
                ok = status == 200 and data == script
            elif kind == 1:
                status, data = _get(f"{api}/workflows/{run_id}")
                ok = status == 200 and json.loads(data)["id"] == run_id
            else:
                body = {"name": "greet", "input": {"name": f"n{i}"}, "id": f"concurrent-{i}"}
                status, data = _post(f"{api}/workflows", body)
                ok = status in (200, 201) and json.loads(data)["id"] == f"concurrent-{i}"
        except Exception as e:  # an HTTP error is a wrong answer too
            return f"request {i} (kind {kind}): {e!r}"
        return None if ok else f"request {i} (kind {kind}): {status} {data[:200]!r}"

    with ThreadPoolExecutor(max_workers=12) as pool:
        wrong = [w for w in pool.map(one, range(1, 241)) if w is not None]
    assert wrong == [], wrong[:5]


def test_a_long_request_does_not_hold_the_reads_behind_it(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request takes a resolver of its own (up to eight), as concurrent Lambda
    environments do: a request held inside its handler (here until the test lets
    it go) leaves the others answered."""
    held, release = threading.Event(), threading.Event()
    original = type(stack.service).list

    def slow_list(self: Any, *args: Any, **kwargs: Any) -> Any:
        held.set()
        release.wait(timeout=120)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(stack.service), "list", slow_list)
    api = stack.api_url
    run_id = Client(api).start("greet", {"name": "Ada"}, id="behind-a-long-one")["id"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(_get, f"{api}/workflows?limit=5")
        try:
            assert held.wait(timeout=60)
            # Answered while the long request is still inside its handler.
            status, data = _get(f"{api}/workflows/{run_id}/steps")
            assert status == 200 and "steps" in json.loads(data)
            assert not slow.done()
        finally:
            release.set()
        status, data = slow.result(timeout=60)
    assert status == 200 and [r["id"] for r in json.loads(data)["workflows"]] == [run_id]
