"""The README and docs/ run as written (issue #17, item 6 and the Quickstart):
every Python block executes, the shell session's commands work against the
embedded stack, every input they start a workflow with passes its model, and
the API table lists every route the API serves."""

from __future__ import annotations

import json
import re
import shlex
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from examples.all import WORKFLOWS as EXAMPLES
from orchestrator import resources as r
from orchestrator.cli import main
from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import ROOT, wait_status

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def block_with(path: Path, lang: str, text: str) -> str:
    found = [b for b in blocks(path, lang) if text in b]
    assert len(found) == 1, f"{path.name}: {len(found)} {lang} blocks contain {text!r}"
    return found[0]


def _models() -> dict[str, Any]:
    from worker._registry import definition_of

    return {definition_of(fn).name: definition_of(fn) for fn in EXAMPLES}


def _starts(text: str) -> list[tuple[str, Any]]:
    found = []
    for m in re.finditer(r"orchestrator start (\w+) --input '([^']*)'", text):
        found.append((m.group(1), json.loads(m.group(2))))
    for m in re.finditer(r"""\{"name": "(\w+)", "input": (\{[^{}]*\})\}""", text):
        found.append((m.group(1), json.loads(m.group(2))))
    return found


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_documented_start_passes_the_workflows_input_model(path: Path) -> None:
    models = _models()
    for name, value in _starts(path.read_text()):
        if name in models:
            models[name].parse_input(json.dumps(value))  # raises on {"who": ...} for greet


def test_the_api_table_lists_every_route() -> None:
    from orchestrator.api.openapi import OPERATIONS

    assert len(OPERATIONS) > 5
    table = README.read_text()
    missing = []
    for op in OPERATIONS:
        path = op.path.replace("{workflow_id}", "{id}").replace("{token}", "{id}")
        if path == "/" or path.startswith("/dashboard"):
            continue
        if f"`{op.method} {path}`" not in table:
            missing.append(f"{op.method} {path}")
    assert not missing, f"README's API table lacks {missing}"


def test_the_context_attributes_are_documented() -> None:
    text = README.read_text()
    for attribute in ("ctx.workflow_id", "ctx.logger", "ctx.now()", "ctx.is_replaying"):
        assert attribute in text


def test_the_workflow_block_runs(stack: Any) -> None:
    """The order workflow as the README writes it, run to the end."""
    namespace: dict[str, Any] = {"__name__": "readme_workflow"}
    exec(compile(block_with(README, "python", '@workflow("order")'), "README", "exec"), namespace)
    from orchestrator.testing import WorkflowTestEnvironment

    with WorkflowTestEnvironment(workflows=[namespace["order"]]) as env:
        run = env.client.start("order", {"order_id": "o-1", "amount": 12.5})
        env.wait_for_status(run["id"], "waiting")
        env.client.signal(run["id"], "approved", {"approved": True})
        env.wait_for_status(run["id"], "sleeping")
        env.skip(timedelta(days=1))
        assert env.client.wait(run["id"])["output"] == "shipped"


def test_the_testing_block_runs() -> None:
    namespace: dict[str, Any] = {"__name__": "readme_testing"}
    code = block_with(README, "python", "def test_reminder")
    exec(compile(code, "README", "exec"), namespace)
    namespace["test_reminder"]()


def test_the_shell_session_and_the_client_block_run(
    stack: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`orchestrator dev` and `orchestrator worker` are the stack and the worker
    here; every other command runs as written, `<id>` being the last run started."""
    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    session = block_with(README, "sh", "orchestrator worker examples.all")
    with BackgroundWorker(EXAMPLES, stack.settings, clock=stack.clock):
        last = None
        for line in session.splitlines():
            command = line.split("#", 1)[0].strip()
            if not command.startswith("orchestrator ") or command.split()[1] in ("dev", "worker"):
                continue
            argv = shlex.split(command)[1:]
            argv = [last if a == "<id>" else a for a in argv]
            if argv[0] == "start":
                argv.append("--json")
            code = main(argv)
            output = capsys.readouterr()
            assert code == 0, (command, output.err)
            if argv[0] == "start":
                last = json.loads(output.out)["id"]
                wait_status(stack, last, "completed", "waiting", "sleeping")

        code = block_with(README, "python", "client = Client(")
        code = code.replace('"http://127.0.0.1:8000"', repr(stack.api_url))
        exec(compile(code, "README", "exec"), {"__name__": "readme_client"})


def test_the_demo_ends_with_what_to_try_next_as_the_readme_says() -> None:
    """`make demo` (61 s, not run here) prints NEXT_STEPS last; its commands are
    the README's, so following it works (the session test above runs them)."""
    import inspect

    from orchestrator import demo

    source = inspect.getsource(demo.run_demo)
    assert source.rstrip().endswith("return 0 if ok else 1")
    assert "out.print(NEXT_STEPS)" in source.split("return 0 if ok else 1")[-2][-200:]
    session = block_with(README, "sh", "orchestrator worker examples.all")
    commands = re.findall(r"\[cyan\](.*?)\[/cyan\]", demo.NEXT_STEPS)
    assert len(commands) >= 5
    for command in commands:
        assert command in session, command


def test_the_error_codes_paragraph_lists_every_status_the_servers_answer_with() -> None:
    """Each error class the API or a loopback server raises, by status and code."""
    from orchestrator import errors

    text = " ".join(README.read_text().split())
    para = text[text.index('Errors are `{"error": {"code", "message"}}`') :]
    para = para[: para.index("A refused request writes nothing.")]
    classes = errors._classes(errors.OrchestratorError)
    statuses: dict[int, list[str]] = {}
    for c in classes:
        if "http_status" in vars(c):
            statuses.setdefault(c.http_status, []).append(c.code)
    assert {400, 403, 404, 405, 409, 411, 413, 415, 429, 500, 503} <= set(statuses)
    for status, codes in statuses.items():
        # The status once, with its first code; a code a status shares after it.
        assert f"{status} (`{codes[0]}`" in para, (status, codes[0])
        for code in codes[1:]:
            assert f"; `{code}`:" in para, (status, code)


def test_the_quickstart_is_exactly_make_demo_and_make_test() -> None:
    """The README's contract: two commands, each doing all its own set-up."""
    text = README.read_text()
    block = text.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
