"""The `orchestrator` command against the embedded stack, in process: readable
output, `--json` that parses, `show --follow`, and user mistakes that print one
`error:` line and exit non-zero, never a traceback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator import resources as r
from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_status
from tests.workflows import ALL


@pytest.fixture
def api_env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Client:
    """The stack, no worker; the CLI finds the API through the environment."""
    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    return Client(stack.api_url)


@pytest.fixture
def api(stack: LocalStack, api_env: Client) -> Iterator[Client]:
    """The stack with a worker."""
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        yield api_env


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_start_list_show_and_steps(
    stack: LocalStack, api: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    started = run_json(capsys, "start", "count", "--input", '{"steps": 2}', "--id", "cli-1")
    assert started["id"] == "cli-1" and started["name"] == "count"
    wait_status(stack, "cli-1", "completed")

    page = run_json(capsys, "list", "--name", "count")
    assert [w["id"] for w in page["workflows"]] == ["cli-1"]
    assert page["next_cursor"] is None
    shown = run_json(capsys, "show", "cli-1")
    assert shown["workflow"]["status"] == "completed"
    assert shown["workflow"]["output"] == {"results": [0, 1]}
    assert [s["name"] for s in shown["steps"]] == ["s0", "s1"]
    assert [s["name"] for s in run_json(capsys, "steps", "cli-1")] == ["s0", "s1"]

    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "STATUS" in out and "cli-1" in out and "completed" in out
    code, out, _ = run(capsys, "show", "cli-1")
    assert code == 0
    assert "count  completed  cli-1" in out
    assert 'output: {"results": [0, 1]}' in out
    assert "s0" in out and "s1" in out
    code, out, _ = run(capsys, "start", "count", "--id", "cli-2")
    assert code == 0 and "started count cli-2" in out


def test_list_pages_with_the_cursor(api: Client, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        api.start("count", {"steps": 1}, id=f"page-{i}")
    first = run_json(capsys, "list", "--limit", "2")
    assert [w["id"] for w in first["workflows"]] == ["page-2", "page-1"]
    code, out, _ = run(capsys, "list", "--limit", "2")
    assert code == 0
    assert f"orchestrator list --cursor {first['next_cursor']}" in out
    second = run_json(capsys, "list", "--limit", "2", "--cursor", first["next_cursor"])
    assert [w["id"] for w in second["workflows"]] == ["page-0"]


def test_start_wait_exits_by_outcome(api: Client, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "start", "count", "--input", '{"steps": 1}', "--wait")
    assert code == 0 and "completed" in out
    code, out, _ = run(capsys, "start", "failing", "--input", "{}", "--wait")
    assert code == 1
    assert "failed" in out and "ValueError: boom" in out


def test_signal_and_cancel(stack: LocalStack, api: Client, capsys) -> None:
    api.start("waiter", {"waits": 1}, id="w-1")
    api.start("waiter", {"waits": 1}, id="w-2")
    wait_status(stack, "w-1", "waiting")
    wait_status(stack, "w-2", "waiting")

    sent = run_json(capsys, "signal", "w-1", "go", "--payload", '{"n": 1}')
    assert sent["woke"] is True and sent["signal"] == "go"
    assert json.loads(wait_status(stack, "w-1", "completed").output) == [{"n": 1}]
    code, out, _ = run(capsys, "signal", "w-2", "other")
    assert code == 0 and "signal 'other' sent to w-2" in out

    cancelled = run_json(capsys, "cancel", "w-2", "--reason", "test")
    assert cancelled["status"] == "cancelled" and cancelled["outcome"] == "cancelled"
    code, out, _ = run(capsys, "cancel", "w-2")
    assert code == 0 and "already cancelled" in out


def test_show_follow_tails_the_run_until_it_ends(
    stack: LocalStack, api: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    api.start("waiter", {"waits": 1}, id="f-1")
    wait_status(stack, "f-1", "waiting")
    timer = threading.Timer(1.0, lambda: api.signal("f-1", "go", "hello"))
    timer.start()
    try:
        code, out, _ = run(capsys, "show", "f-1", "--follow", "--interval", "0.1")
    finally:
        timer.cancel()
    assert code == 0
    assert "waiting for signal 'go'" in out  # the wait, as it was first seen
    assert "signal 'go': \"hello\"" in out  # then its outcome
    assert "#1 step after-0" in out
    assert "→ completed" in out
    assert 'output: ["hello"]' in out

    api.start("failing", {}, id="f-2")
    code, out, _ = run(capsys, "show", "f-2", "--follow", "--interval", "0.1")
    assert code == 1
    assert "ValueError: boom" in out


def test_follow_json_is_a_stream_of_events(
    stack: LocalStack, api: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    api.start("count", {"steps": 2}, id="j-1")
    wait_status(stack, "j-1", "completed")
    code, out, _ = run(capsys, "show", "j-1", "--follow", "--json")
    assert code == 0
    events = [json.loads(chunk) for chunk in out.replace("}\n{", "}\0{").split("\0")]
    assert [e["event"] for e in events] == ["run", "step", "step"]


def assert_one_error_line(code: int, out: str, err: str, message: str) -> None:
    assert code != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "no-such-run"], "no workflow run with id 'no-such-run'"),
        (["steps", "no-such-run"], "no-such-run"),
        (["cancel", "no-such-run"], "no-such-run"),
        (["signal", "no-such-run", "go"], "no-such-run"),
        (["list", "--status", "bogus"], "unknown status 'bogus'"),
        (["start", "9-bad-name"], "name"),
    ],
)
def test_requests_the_api_refuses_print_one_line(
    api_env: Client, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert_one_error_line(*run(capsys, *argv), message)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["start", "count", "--input", "{bad"], "--input is not valid JSON"),
        (["signal", "x", "go", "--payload", "nope"], "--payload is not valid JSON"),
        (["start", "count", "--input", "@/no/such/file.json"], "cannot read"),
        (["show"], "Missing argument"),
        (["list", "--limit", "many"], "--limit"),
        (["list", "--bogus"], "No such option"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_mistakes_print_one_line_before_any_request(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setenv(r.ENV_API_URL, "http://127.0.0.1:9")  # nothing listens: no request
    assert_one_error_line(*run(capsys, *argv), message)


def test_a_missing_setting_or_an_unreachable_api_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(r.ENV_API_URL, raising=False)
    code, _, err = run(capsys, "list")
    assert code == 1
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("error: no API URL") and r.ENV_API_URL in err

    code, _, err = run(capsys, "dashboard")
    assert code == 1 and err.startswith("error: no API URL: pass --api-url")

    code, _, err = run(capsys, "--api-url", "http://127.0.0.1:9", "show", "x")
    assert code == 1
    assert err.startswith("error: cannot reach the API at http://127.0.0.1:9")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "command",
    [
        "start",
        "list",
        "show",
        "steps",
        "signal",
        "inbox",
        "cancel",
        "terminate",
        "bulk",
        "export",
        "dashboard",
        "worker",
        "dev",
        "demo",
    ],
)
def test_every_command_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert "Usage: orchestrator" in out
    assert "Example" in out
    assert f"orchestrator {command}" in out.split("Example", 1)[1]


def test_workers_command_lists_live_workers_and_show_flags_unserved_runs(
    stack: LocalStack, api_env: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import wait_for
    from tests.workflows import count

    client = api_env
    orphan = client.start("nobody-serves-this", {})
    with BackgroundWorker([count], stack.settings, clock=stack.clock):
        wait_for(client.workers)
        code, out, _ = run(capsys, "workers")
        assert code == 0 and "count" in out and "yes" in out
        listed = run_json(capsys, "workers")
        assert listed[0]["names"] == ["count"]
        code, out, _ = run(capsys, "show", orphan["id"])
        assert code == 0 and "no live worker serves 'nobody-serves-this'" in out
