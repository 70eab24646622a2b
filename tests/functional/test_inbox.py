"""Buffered signals are visible, and a signal whose name the run is not
waiting for is flagged (issue #17, item 4)."""

from __future__ import annotations

import json

import pytest

from orchestrator import resources as r
from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.local.worker_thread import BackgroundWorker
from tests.helpers import wait_status
from tests.workflows import ALL


def test_a_misspelled_signal_is_flagged_and_the_inbox_shows_it(
    stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(r.ENV_API_URL, stack.api_url)
    client = Client(stack.api_url)
    with BackgroundWorker(ALL, stack.settings, clock=stack.clock):
        run = client.start("waiter", {"signal": "approved", "timeout": 600})
        wait_status(stack, run["id"], "waiting")

        sent = client.signal(run["id"], "aproved", {"ok": True})
        assert sent["woke"] is False
        assert "waiting for signal 'approved', not 'aproved'" in sent["warning"]
        assert [(s["name"], s["payload"]) for s in client.inbox(run["id"])] == [
            ("aproved", {"ok": True})
        ]

        assert main(["signal", run["id"], "aproved"]) == 0  # stored: a retry would duplicate it
        err = capsys.readouterr().err
        assert "warning:" in err and "orchestrator inbox" in err

        assert main(["inbox", run["id"], "--json"]) == 0
        assert [s["seq"] for s in json.loads(capsys.readouterr().out)] == [1, 2]
        assert main(["show", run["id"]]) == 0
        assert "2 buffered signal(s)" in capsys.readouterr().out

        # A signal sent before any wait is normal: no warning.
        early = client.start("waiter", {"signal": "approved", "timeout": 600})
        assert "warning" not in client.signal(early["id"], "approved", None)
