"""A run whose value in S3 is gone (expired, or lost by a dev stack): `show`
still shows it, with the value marked unavailable, whether the API inlines the
value or hands a link to it; `replay-check` lists it as unreadable, with no
traceback, and does not fail the gate for it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator import resources as r
from orchestrator.cli import main
from orchestrator.local import LocalStack
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.payloads import MAX_INLINE_READ_BYTES
from tests.helpers import wait_status
from tests.workflows_large import LARGE


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _drop_every_value(stack: LocalStack) -> int:
    resp = stack.s3.list_objects_v2(Bucket=stack.settings.bucket, Prefix=r.VALUE_KEY_PREFIX)
    keys = [o["Key"] for o in resp.get("Contents", [])]
    for key in keys:
        stack.s3.delete_object(Bucket=stack.settings.bucket, Key=key)
    return len(keys)


@pytest.fixture
def gone(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, exec_log: Any) -> tuple[str, str]:
    """(a waiting run with a 50 KB step, a completed run with an output above what
    the API inlines), both values deleted from the bucket."""
    for k, v in stack.exports().items():
        monkeypatch.setenv(k, v)
    with BackgroundWorker(LARGE, stack.settings, clock=stack.clock):
        waiting, _ = stack.service.start("large.waiter", {"size": 50 * 1024})
        big, _ = stack.service.start("large.value", {"size": MAX_INLINE_READ_BYTES + 1024})
        wait_status(stack, waiting.id, "waiting", timeout=60)
        assert wait_status(stack, big.id, "completed", "failed", timeout=90).status == "completed"
    assert _drop_every_value(stack) >= 2
    return waiting.id, big.id


def test_show_marks_a_value_that_is_no_longer_stored(
    gone: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    waiting, big = gone
    code, out, err = _cli(capsys, "show", waiting)
    assert code == 0, err
    assert "waiting for signal 'go'" in out
    assert "value unavailable: the recorded result of 'make' is no longer stored" in out
    assert "<value unavailable: value " in " ".join(out.split())  # in the steps table

    code, out, err = _cli(capsys, "show", big)  # the output comes as a link, and S3 says 404
    assert code == 0, err
    assert "completed" in out
    assert "output: <value unavailable: " in out and "404" in out

    code, out, err = _cli(capsys, "show", waiting, "--json")
    assert code == 0, err
    shown = json.loads(out)
    step = next(s for s in shown["steps"] if s["name"] == "make")
    assert step["result"] is None
    assert "no longer stored" in step["result_link"]["unavailable"]


def test_replay_check_lists_a_run_it_cannot_read(
    gone: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    waiting, big = gone
    code, out, err = _cli(capsys, "replay-check", "tests.workflows_large", "--include-finished")
    assert "Traceback" not in out + err
    assert code == 0, out + err  # no build can replay them: not a determinism failure
    lines = out.splitlines()
    for run_id in (waiting, big):
        assert any(line.startswith(f"UNREADABLE {run_id} ") for line in lines), out
    assert "2 unreadable" in err

    code, out, err = _cli(
        capsys, "replay-check", "tests.workflows_large", "--include-finished", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["unreadable"] == 2 and report["failed"] == 0
