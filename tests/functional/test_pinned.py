"""Pinned versioning (`@workflow(..., versioning="pinned")`): a run stays on the
build that first claimed it, its messages go to that build's queue, the claim
refuses it to any other build, a run whose build has no live worker is flagged
`stranded`, and `orchestrator migrate` moves it after a replay check."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestrator import Client
from orchestrator.errors import ConflictError
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.store import requests as q
from tests.helpers import finish_through_sleeps, wait_for, wait_status
from tests.pinned import make
from worker import Worker, workflow

A, B = "2026.11.1", "2026.12.1+hotfix"  # a build id may hold '.', '+', ':'


def _build(stack: Any, build: str) -> BackgroundWorker:
    label = "A" if build == A else "B"
    return BackgroundWorker([make(label)], stack.settings, clock=stack.clock, build_id=build)


def _depth(stack: Any, key: str | None) -> int:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url_for(key),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_a_pinned_run_is_resumed_only_by_its_own_build_while_another_build_runs(stack) -> None:
    with _build(stack, A):
        stack.service.start("ledger", {}, "r1")
        first = wait_status(stack, "r1", "sleeping")
    assert (first.build_id, first.pinned) == (A, True)
    assert first.route == f"default@{A}"

    with _build(stack, B) as b:
        # r1's build is gone; B serves "ledger" and runs new runs, never r1.
        stack.service.start("ledger", {}, "r2")
        r2 = wait_status(stack, "r2", "sleeping")
        assert (r2.build_id, r2.pinned) == (B, True)
        stack.clock.advance(3601)  # r1's wake-up fires into A's queue, which B does not poll
        assert finish_through_sleeps(stack, "r2") == {"open": "B", "close": "B"}
        # A stray message for r1 on the shared queue: B's claim is refused, and B
        # passes it on to A's queue instead of running it.
        stack.dispatcher.send("r1", "stray")
        wait_for(lambda: _depth(stack, None) == 0)
        assert b.worker.stats["claimed"] == 2  # r2 twice (start, wake-up); never r1
        r1 = stack.store.get("r1")
        assert r1.status.value == "sleeping" and r1.epoch == first.epoch
        assert _depth(stack, first.route) >= 1  # the timer's message, and the forwarded one

        with _build(stack, A):  # A is back: it resumes r1 while B keeps running
            stack.service.start("ledger", {}, "r3")  # whichever claims first owns it
            assert finish_through_sleeps(stack, "r1") == {"open": "A", "close": "A"}
            r3 = wait_status(stack, "r3", "sleeping")
            assert r3.pinned and r3.build_id in (A, B)
            label = "A" if r3.build_id == A else "B"
            assert finish_through_sleeps(stack, "r3") == {"open": label, "close": label}


def test_the_claim_refuses_a_pinned_run_to_another_build_and_to_a_worker_without_one(
    stack,
) -> None:
    with _build(stack, A):
        stack.service.start("ledger", {}, "p")
        run = wait_status(stack, "p", "sleeping")
    stack.clock.advance(3601)  # due: only the build decides now
    for build in (B, None):
        with pytest.raises(ClientError) as refused:
            stack.ddb.update_item(
                **q.claim(
                    stack.settings.table,
                    "p",
                    owner="stray",
                    now=stack.clock.now_ms(),
                    lease_ms=30_000,
                    names=["ledger"],
                    build_id=build,
                )
            )
        assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert stack.store.get("p").epoch == run.epoch  # nothing written
    claimed = stack.ddb.update_item(
        **q.claim(
            stack.settings.table,
            "p",
            owner="right",
            now=stack.clock.now_ms(),
            lease_ms=30_000,
            names=["ledger"],
            build_id=A,
        )
    )
    assert claimed["Attributes"]["owner"]["S"] == "right"


def test_versioning_is_validated_and_pinned_needs_a_build_id(stack) -> None:
    with pytest.raises(ValueError, match="versioning 'sticky' must be one of: auto, pinned"):
        workflow("w", versioning="sticky")
    with pytest.raises(ValueError, match="give the worker a build id"):
        Worker(workflows=[make("A")], settings=stack.settings)


def test_a_pinned_run_whose_build_has_no_live_worker_is_flagged_stranded(
    make_stack, capsys
) -> None:
    from orchestrator.cli import main
    from tests.conftest import TEST_SETTINGS

    stack = make_stack(settings=TEST_SETTINGS.with_(stranded_after_s=300))
    client = Client(stack.api_url)
    with _build(stack, A):
        stack.service.start("ledger", {}, "s")
        wait_status(stack, "s", "sleeping")
        assert client.get("s")["stranded"] is False  # A is live
    assert client.get("s")["stranded"] is False  # A stopped just now
    stack.clock.advance(301)
    view = client.get("s")
    assert (view["pinned"], view["stranded"], view["build_id"]) == (True, True, A)
    assert [r["stranded"] for r in client.list(build_id=A)["workflows"]] == [True]
    assert main(["--api-url", stack.api_url, "show", "s"]) == 0
    assert f"stranded: no live worker of build {A}" in capsys.readouterr().out
    stopped = client.workers(include_stopped=True)
    assert [(w["build_id"], w["live"]) for w in stopped] == [(A, False)]  # the registry's
    assert main(["--api-url", stack.api_url, "workers", "--all"]) == 0
    assert A in capsys.readouterr().out  # `orchestrator workers` has a build column
    with _build(stack, A):
        assert client.get("s")["stranded"] is False  # a live worker of its build again


def test_migrate_refuses_a_replay_mismatch_then_moves_a_compatible_run_to_the_new_build(
    stack, capsys, monkeypatch
) -> None:
    from orchestrator.cli import main

    for key, value in stack.exports().items():
        monkeypatch.setenv(key, value)
    cli = ["--api-url", stack.api_url, "migrate"]
    with _build(stack, A):
        stack.service.start("ledger", {}, "m")
        before = wait_status(stack, "m", "sleeping")
    with _build(stack, B):  # B's worker has started: its queue exists
        assert main([*cli, "m", "--to", B, "--module", "tests.pinned.b_renamed"]) == 1
        err = capsys.readouterr().err
        assert "not migrated" in err and "operation 0" in err, err
        after = stack.store.get("m")
        assert (after.build_id, after.epoch, after.updated_at) == (
            A,
            before.epoch,
            before.updated_at,
        )

        assert main([*cli, "m", "--to", B, "--module", "tests.pinned.b"]) == 0
        assert "migrated: m is on build" in capsys.readouterr().out
        moved = stack.store.get("m")
        assert (moved.build_id, moved.pinned, moved.epoch) == (B, True, before.epoch + 1)
        assert finish_through_sleeps(stack, "m") == {
            "open": "A",
            "close": "B",
        }  # A's record replayed


def test_migrate_refuses_bad_input_and_runs_it_cannot_move_writing_nothing(stack) -> None:
    from orchestrator.errors import BadInputError, NotFoundError

    client = Client(stack.api_url)
    with _build(stack, A):
        stack.service.start("ledger", {}, "x")
        wait_status(stack, "x", "sleeping")
    with _build(stack, B):
        pass  # B's queue exists from here on
    stack.service.start("ledger", {}, "done")
    stack.store.terminate("done", "test")  # a terminal run

    def snapshot() -> Any:
        return [stack.store.get(i) for i in ("x", "done")]

    seen = snapshot()
    with pytest.raises(BadInputError, match="build id"):
        client.migrate("x", to_build="not a build!")
    with pytest.raises(NotFoundError):
        client.migrate("nobody", to_build=B)
    with pytest.raises(ConflictError, match="it has no build to move"):
        client.migrate("done", to_build=B)
    with pytest.raises(ConflictError, match="does not exist"):
        client.migrate("x", to_build="2027.1.1")  # no worker of it ever started
    with pytest.raises(ConflictError, match="moved on since it was checked"):
        client.migrate("x", to_build=B, attempt=seen[0].epoch - 1)
    assert snapshot() == seen
    assert client.migrate("x", to_build=A)["outcome"] == "already_there"
    assert snapshot() == seen
