"""Bad input on every route: a clear 4xx, and nothing written."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from orchestrator import BadInputError, Client, NotFoundError, PayloadTooLargeError
from orchestrator.model import MAX_INPUT_BYTES, MAX_SIGNAL_PAYLOAD_BYTES


def _raw(stack, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(stack.api_url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _nothing_written(stack) -> None:
    assert stack.store.list_runs().runs == []
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"input": {}}', 400, "name: Field required"),
        (b'{"name": 42}', 400, "name: Input should be a valid string"),
        (b'{"name": "9starts-with-digit"}', 400, "must start with a letter"),
        (b'{"name": "greet", "id": "has space"}', 400, "id:"),
        (b'{"name": "greet", "extra": 1}', 400, "extra: Extra inputs are not permitted"),
        (b'{"name": "greet", "execution_timeout_seconds": -5}', 400, "execution_timeout_seconds"),
        (
            json.dumps({"name": "greet", "input": "x" * (MAX_INPUT_BYTES + 10)}).encode(),
            413,
            "limit",
        ),
        (b"x" * (600 * 1024), 413, "over"),
    ],
)
def test_bad_starts_are_refused_and_write_nothing(
    stack, body: bytes, status: int, fragment: str
) -> None:
    code, reply = _raw(stack, "POST", "/workflows", body)
    assert code == status
    assert fragment in reply["error"]["message"], reply
    assert reply["error"]["code"] in {"bad_input", "payload_too_large"}
    _nothing_written(stack)


def test_unknown_ids_are_404_on_every_run_route(stack) -> None:
    for method, path, body in [
        ("GET", "/workflows/nope", None),
        ("GET", "/workflows/nope/steps", None),
        ("POST", "/workflows/nope/signals", b'{"name": "go"}'),
        ("POST", "/workflows/nope/cancel", b""),
    ]:
        code, reply = _raw(stack, method, path, body)
        assert code == 404 and "nope" in reply["error"]["message"], (method, path, reply)
    _nothing_written(stack)


def test_wrong_methods_and_unknown_routes(stack) -> None:
    code, reply = _raw(stack, "DELETE", "/workflows")
    assert code == 405 and "use GET, POST" in reply["error"]["message"]
    code, reply = _raw(stack, "PUT", "/workflows/abc/signals")
    assert code == 405
    code, reply = _raw(stack, "GET", "/nothing/here")
    assert code == 404 and reply["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("limit=100000", "limit must be a whole number from 1 to 200"),
        ("limit=0", "limit must be a whole number from 1 to 200"),
        ("limit=ten", "ASCII digits"),
        ("status=sleepy", "unknown status"),
        ("cursor=garbage!!", "cursor"),
        ("color=red", "unknown query parameter"),
    ],
)
def test_bad_list_queries(stack, query: str, fragment: str) -> None:
    code, reply = _raw(stack, "GET", f"/workflows?{query}")
    assert code == 400 and fragment in reply["error"]["message"]


def test_bad_signals_are_refused_and_write_nothing(stack) -> None:
    client = Client(stack.api_url)
    run = client.start("greet", {"name": "x"})
    for body, fragment in [
        (b'{"payload": 1}', "name: Field required"),
        (b'{"name": "has#hash"}', "name:"),
        (b"{oops", "not valid JSON"),
        (
            json.dumps({"name": "go", "payload": "x" * (MAX_SIGNAL_PAYLOAD_BYTES + 1)}).encode(),
            "limit",
        ),
    ]:
        code, reply = _raw(stack, "POST", f"/workflows/{run['id']}/signals", body)
        assert code in (400, 413) and fragment in reply["error"]["message"], reply
    assert stack.store.get(run["id"]).signal_seq == 0
    assert stack.store.signals(run["id"], "go") == []


def test_the_python_client_raises_typed_errors(stack) -> None:
    client = Client(stack.api_url)
    with pytest.raises(BadInputError):
        client.start("9bad")
    with pytest.raises(PayloadTooLargeError):
        client.start("greet", "x" * (MAX_INPUT_BYTES + 1))
    with pytest.raises(NotFoundError):
        client.get("missing")
    with pytest.raises(BadInputError):
        client.list(limit=10_000)
    with pytest.raises(BadInputError, match="no API URL"):
        Client(api_url="")


def test_idempotent_start(stack) -> None:
    from orchestrator import ConflictError

    client = Client(stack.api_url)
    first = client.start("greet", {"name": "a"}, id="same")
    again = client.start("greet", {"name": "a"}, id="same")
    assert first["id"] == again["id"] == "same" and first["created_at"] == again["created_at"]
    with pytest.raises(ConflictError, match="different input"):
        client.start("greet", {"name": "b"}, id="same")
    assert len(stack.store.list_runs().runs) == 1


def test_listing_pages_newest_first_and_filters(stack) -> None:
    client = Client(stack.api_url)
    for i in range(7):
        client.start("greet" if i % 2 else "other", {"i": i}, id=f"run-{i}")
        stack.clock.advance(0.01)
    seen, cursor = [], None
    while True:
        page = client.list(limit=3, cursor=cursor)
        seen += [w["id"] for w in page["workflows"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"run-{i}" for i in reversed(range(7))]
    assert [w["id"] for w in client.list(name="greet")["workflows"]] == ["run-5", "run-3", "run-1"]
    client.cancel("run-3")
    assert [w["id"] for w in client.list(status="cancelled")["workflows"]] == ["run-3"]
    assert [w["id"] for w in client.list(status="pending", name="greet")["workflows"]] == [
        "run-5",
        "run-1",
    ]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ClientError({"Error": {"Code": "ThrottlingException"}}, "GetItem"), 503, "unavailable"),
        (
            ClientError(
                {"Error": {"Code": "Whatever"}, "ResponseMetadata": {"HTTPStatusCode": 502}},
                "GetItem",
            ),
            503,
            "unavailable",
        ),
        (EndpointConnectionError(endpoint_url="http://db"), 503, "unavailable"),
        (ClientError({"Error": {"Code": "ValidationException"}}, "GetItem"), 500, "internal"),
    ],
)
def test_a_store_failure_that_outlived_the_sdk_retries_is_503_if_transient(
    stack, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int, code: str
) -> None:
    """The API and the worker share one list of transient errors
    (orchestrator.aws.is_transient): transient ones are a 503 to retry."""

    def failing(_: str) -> None:
        raise error

    monkeypatch.setattr(stack.store, "get", failing)
    got, body = _raw(stack, "GET", "/workflows/some-run")
    assert (got, body["error"]["code"]) == (status, code)
