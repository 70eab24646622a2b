"""Finding 5 of issue #16: validation bypasses. A trailing newline slipped past
`$`; path parameters were not percent-decoded, so a valid id such as a:b.c
broke `Client.get`; execution_timeout_seconds took "10" and true."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator import BadInputError, Client
from orchestrator.local import LocalStack
from orchestrator.model import SIGNAL_NAME_RE, STEP_NAME_RE, WORKFLOW_ID_RE, WORKFLOW_NAME_RE
from tests.security._http import JSON, json_error, request


@pytest.mark.parametrize(
    "pattern", [WORKFLOW_NAME_RE, WORKFLOW_ID_RE, SIGNAL_NAME_RE, STEP_NAME_RE]
)
def test_no_pattern_matches_before_a_final_newline(pattern: Any) -> None:
    assert pattern.match("x1") and not pattern.match("x1\n")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x\n"},
        {"name": "greet", "id": "nl-id\n"},
        {"name": "greet", "execution_timeout_seconds": "10"},
        {"name": "greet", "execution_timeout_seconds": True},
        {"name": "greet", "id": 12},
    ],
)
def test_a_start_that_slipped_through_is_refused(sec_stack: LocalStack, unchanged, body) -> None:
    status, _, reply = request(
        sec_stack.api_url, "POST", "/workflows", headers=JSON, body=json.dumps(body).encode()
    )
    assert status == 400 and json_error(reply)["code"] == "bad_input"
    unchanged()


def test_a_signal_name_with_a_newline_is_refused(sec_stack: LocalStack) -> None:
    run = Client(sec_stack.api_url).start("greet", {}, id="sig-nl")
    with pytest.raises(BadInputError):
        Client(sec_stack.api_url).signal(run["id"], "go\n", None)


@pytest.mark.parametrize("path", ["/workflows/x%0A", "/workflows/%ZZ", "/workflows/%C3%28/steps"])
def test_an_encoded_bad_id_is_a_400(sec_stack: LocalStack, path: str) -> None:
    status, _, reply = request(sec_stack.api_url, "GET", path)
    assert status == 400, reply
    assert json_error(reply)["code"] == "bad_input"


def test_an_id_with_reserved_characters_works_on_every_route(sec_stack: LocalStack) -> None:
    client = Client(sec_stack.api_url)
    run = client.start("greet", {"who": "x"}, id="a:b.c", execution_timeout=10)
    assert client.get("a:b.c")["id"] == "a:b.c"
    assert client.steps("a:b.c") == []
    assert client.signal("a:b.c", "go", None)["workflow_id"] == "a:b.c"
    assert client.cancel("a:b.c")["status"] == "cancelled"
    assert run["deadline_at"] is not None


class _Context:
    function_name = "orchestrator-api"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:orchestrator-api"
    aws_request_id = "req-path"


def test_the_lambda_decodes_path_parameters_as_the_local_server_does(
    sec_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event as API Gateway (HTTP API, payload 2.0) sends it: rawPath as the
    client encoded it, pathParameters decoded."""
    from orchestrator.api import lambda_handler
    from orchestrator.local.http import to_event

    Client(sec_stack.api_url).start("greet", {}, id="gw:1.x")
    for k, v in sec_stack.exports().items():
        monkeypatch.setenv(k, v)
    lambda_handler._service.cache_clear()
    try:
        event = to_event("GET", "/workflows/gw%3A1.x", {}, b"")
        event["pathParameters"] = {"proxy": "workflows/gw:1.x"}
        event["routeKey"] = "GET /{proxy+}"
        reply = lambda_handler.handler(event, _Context())
        assert reply["statusCode"] == 200 and json.loads(reply["body"])["id"] == "gw:1.x"
        local = request(sec_stack.api_url, "GET", "/workflows/gw%3A1.x")
        assert json.loads(local[2])["id"] == "gw:1.x"
    finally:
        lambda_handler._service.cache_clear()
