"""Operations at scale (issue #17): terminate (immediate, no cleanup, distinct
from cancel), bulk cancel and terminate by filter (a dry run first, then a
confirmed count), and a run's history exported as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import resources as r
from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.errors import BadInputError, ConflictError
from orchestrator.local.worker_thread import BackgroundWorker
from tests.conftest import executions
from tests.helpers import wait_for, wait_status
from tests.workflows import ALL


def test_terminate_ends_a_running_run_at_once_without_its_cleanup(
    stack, exec_log: Path, tmp_path: Path
) -> None:
    client = Client(stack.api_url)
    marker = tmp_path / "started"
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("cleanup", {"pause": 2.0, "marker": str(marker)})
        wait_for(marker.exists)
        ended = client.terminate(run["id"], reason="stuck")
        assert ended["outcome"] == "terminated" and ended["status"] == "cancelled"
        assert ended["error"]["type"] == "Terminated"
        wait_for(lambda: f"{run['id']}:work" in executions(exec_log), timeout=20)  # the step ends
        stopped = stack.store.get(run["id"])
    assert stopped.status.value == "cancelled" and stopped.error.type == "Terminated"
    assert not any(line.endswith(":undo") for line in executions(exec_log))  # no cleanup
    assert client.terminate(run["id"])["outcome"] == "already_cancelled"


def test_bulk_cancel_is_a_dry_run_until_confirmed_with_the_count(
    stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    client = Client(stack.api_url)
    ids = [client.start("nobody-serves", {"n": i})["id"] for i in range(5)]
    other = client.start("someone-else", {})["id"]

    counted = client.bulk("cancel", name="nobody-serves")
    assert counted["dry_run"] and counted["count"] == 5 and set(counted["sample"]) == set(ids)
    assert all(stack.store.get(i).status.value == "pending" for i in ids)  # nothing changed
    with pytest.raises(ConflictError):
        client.bulk("cancel", name="nobody-serves", dry_run=False, confirm_count=4)

    assert main(["bulk", "cancel", "--name", "nobody-serves"]) == 0
    assert "dry run: 5 unfinished run(s) match" in capsys.readouterr().out
    assert main(["bulk", "cancel", "--name", "nobody-serves", "--yes"]) == 0
    assert "cancel: 5 run(s): 5 cancelled" in capsys.readouterr().out
    assert all(stack.store.get(i).status.value == "cancelled" for i in ids)
    assert stack.store.get(other).status.value == "pending"
    done = client.bulk("terminate", status="pending", dry_run=False, confirm_count=1)
    assert done["outcomes"] == {"terminated": 1}


def test_export_writes_the_runs_full_history(
    stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("waiter", {"signal": "go"})
        wait_status(stack, run["id"], "waiting")
        client.signal(run["id"], "go", {"n": 1})
        client.signal(run["id"], "extra", None)
        wait_status(stack, run["id"], "completed")
    out = tmp_path / "history.json"
    assert main(["export", run["id"], "-o", str(out)]) == 0
    history = json.loads(out.read_text())
    assert history["workflow"]["id"] == run["id"] and history["workflow"]["status"] == "completed"
    assert [s["kind"] for s in history["steps"]] == ["wait", "step"]
    assert [(s["name"], s["consumed"]) for s in history["signals"]] == [
        ("go", True),
        ("extra", False),
    ]


def test_runs_started_with_tags_are_listed_by_tag(
    stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    client = Client(stack.api_url)
    mine = [client.start("count", {"n": i}, tags={"customer": "42"})["id"] for i in range(3)]
    client.start("count", {}, tags={"customer": "7"})
    client.start("count", {})
    assert client.get(mine[0])["tags"] == {"customer": "42"}

    first = client.list(tag="customer=42", limit=2)
    assert [w["id"] for w in first["workflows"]] == mine[:0:-1]  # newest first
    rest = client.list(tag="customer=42", limit=2, cursor=first["next_cursor"])
    assert [w["id"] for w in rest["workflows"]] == mine[:1] and rest["next_cursor"] is None

    # A refused start (the id exists with another input) leaves no run in the tag's list.
    with pytest.raises(ConflictError):
        client.start("count", {"other": True}, id=mine[0], tags={"customer": "9"})
    assert client.list(tag="customer=9")["workflows"] == []

    assert main(["list", "--tag", "customer=42", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["workflows"]) == 3
    with pytest.raises(BadInputError):
        client.start("count", {}, tags={"bad key": "x"})
