"""Task queues: one SQS queue per task queue, runs routed by their record,
workers that poll only the queues they serve."""

from __future__ import annotations

import json

import pytest

from orchestrator.errors import BadInputError
from orchestrator.local.worker_thread import BackgroundWorker
from orchestrator.testing import WorkflowTestEnvironment
from tests.helpers import wait_for
from worker import Worker, workflow


@workflow("anywhere")
async def anywhere(ctx, input) -> str:
    return await ctx.step("where", lambda: "ran")


@workflow("train", task_queue="gpu")
async def train(ctx, input) -> str:
    return await ctx.step("fit", lambda: "trained")


def _depth(stack, task_queue: str | None) -> int:
    """Messages in a task queue's SQS queue, visible or in flight."""
    a = stack.sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url_for(task_queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def _reasons(stack, task_queue: str) -> list[str]:
    """The reasons of the messages visible in a queue no worker polls, left visible."""
    resp = stack.sqs.receive_message(
        QueueUrl=stack.settings.queue_url_for(task_queue),
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
    )
    return [json.loads(m["Body"])["reason"] for m in resp.get("Messages", [])]


def test_a_gpu_run_is_untouched_by_default_queue_workers() -> None:
    with WorkflowTestEnvironment(workflows=[anywhere], task_queues=["gpu"]) as env:
        stack = env.stack
        assert stack is not None
        # The environment's worker polls default only (no workflow declares a queue).
        normal = env.client.start("anywhere", None)
        assert env.client.wait(normal["id"], timeout=20)["status"] == "completed"
        run = env.client.start("anywhere", None, id="on-gpu", task_queue="gpu")
        assert run["task_queue"] == "gpu"
        # A stray copy of its message on the default queue: forwarded, never claimed.
        # Wait for the forward itself (other senders, the sweeper's re-offer of an
        # unserved run among them, also put messages on gpu): a message with the
        # reason "forward" on the gpu queue, which no worker polls yet, and nothing
        # left on the default queue (the stray copy was deleted, not left to return).
        stack.dispatcher.send("on-gpu", "test")
        wait_for(lambda: "forward" in _reasons(stack, "gpu"), timeout=20, interval=0.1)
        wait_for(lambda: _depth(stack, None) == 0, timeout=20, interval=0.1)
        held = env.client.get("on-gpu")
        assert held["status"] == "pending" and held["attempt"] == 0
        assert held["unserved"] is True  # no live worker serves anywhere on gpu
        with BackgroundWorker([anywhere], stack.settings, clock=env.clock, task_queues=["gpu"]):
            done = env.client.wait("on-gpu", timeout=20)
        assert done["status"] == "completed" and done["task_queue"] == "gpu"
        workers = env.client.workers()
        assert sorted(q for w in workers for q in w["task_queues"]) == ["default"]


def test_a_declared_queue_routes_the_worker_and_an_undeclared_one_is_refused() -> None:
    with WorkflowTestEnvironment(workflows=[anywhere, train], task_queues=["gpu"]) as env:
        # The worker polls gpu (train declares it) and default (anywhere declares none).
        run = env.client.start("train", None, task_queue="gpu")
        assert env.client.wait(run["id"], timeout=20)["output"] == "trained"
        (info,) = env.client.workers()
        assert sorted(info["task_queues"]) == ["default", "gpu"]
        # train runs from gpu only: a start on default waits, flagged unserved.
        stray = env.client.start("train", None)
        assert env.client.get(stray["id"])["unserved"] is True
        with pytest.raises(BadInputError, match="not one of this deployment's") as refused:
            env.client.start("anywhere", None, task_queue="bulk")
        # The 400 names the fix where the user is: the stack's task_queues when
        # deployed, the dev stack's flag locally.
        assert "add 'bulk' to the stack's task_queues" in str(refused.value)
        assert "`orchestrator dev --task-queue bulk`" in str(refused.value)
        assert env.client.list(limit=10)["workflows"][0]["id"] == stray["id"]  # nothing written


def test_a_worker_refuses_a_queue_the_deployment_lacks() -> None:
    with WorkflowTestEnvironment(workflows=[anywhere]) as env:
        assert env.stack is not None
        with pytest.raises(ValueError, match="not one of the deployment's") as refused:
            Worker(workflows=[anywhere], settings=env.stack.settings, task_queues=["gpu"])
        assert "the stack's task_queues" in str(refused.value)
        assert "`orchestrator dev --task-queue gpu`" in str(refused.value)
        with pytest.raises(ValueError, match="none of the workflows"):
            Worker(workflows=[train], settings=env.stack.settings, task_queues=["default"])
