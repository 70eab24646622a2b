"""Pinned builds' queue names and routes, and the stranded rule: pure."""

from __future__ import annotations

import re

import pytest

from orchestrator import resources as r
from orchestrator.api.models import Fleet
from orchestrator.model import Run, Status
from orchestrator.settings import Settings

SQS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}\Z")


def test_build_queue_names_are_valid_sqs_names_and_keep_builds_apart() -> None:
    names = {
        build: r.pinned_queue_name("orchestrator-work", "gpu", build)
        for build in ("1.0", "1-0", "1:0", "v2+hotfix", "x" * 64)
    }
    assert len(set(names.values())) == len(names)  # "1.0" and "1-0" differ by the hash
    for name in names.values():
        assert SQS_NAME.match(name), name
        assert name.startswith("orchestrator-work-gpu_b_")
    assert r.split_queue_key("gpu@1.0") == ("gpu", "1.0")
    assert r.split_queue_key(None) == ("default", None)
    with pytest.raises(ValueError, match="no room"):
        r.pinned_queue_name("q" * 75, "default", "1.0")


def test_a_pinned_runs_route_and_its_queue_urls() -> None:
    s = Settings(
        queue_url="http://sqs/123/orchestrator-work",
        queue_arn="arn:aws:sqs:us-east-1:123:orchestrator-work",
        dlq_url="http://sqs/123/orchestrator-work-dlq",
    )
    run = Run(id="r", name="w", status=Status.SLEEPING, input="{}", created_at=0, updated_at=0)
    assert run.route is None
    assert Run(**{**vars(run), "build_id": "1.0"}).route is None  # not pinned: its task queue
    pinned = Run(**{**vars(run), "build_id": "1.0", "pinned": True, "task_queue": "gpu"})
    assert pinned.route == "gpu@1.0"
    name = r.pinned_queue_name("orchestrator-work", "gpu", "1.0")
    assert s.queue_url_for("gpu@1.0") == f"http://sqs/123/{name}"
    assert s.queue_arn_for("gpu@1.0") == f"arn:aws:sqs:us-east-1:123:{name}"
    # A build's queue shares its task queue's dead-letter queue.
    assert (
        s.dlq_url_for("gpu@1.0")
        == s.dlq_url_for("gpu")
        == "http://sqs/123/orchestrator-work-gpu-dlq"
    )
    assert s.dlq_arn_for("default@1.0") == "arn:aws:sqs:us-east-1:123:orchestrator-work-dlq"


def test_stranded_means_pinned_unfinished_and_no_live_worker_of_its_build_for_the_threshold() -> (
    None
):
    base = Run(
        id="r",
        name="w",
        status=Status.SLEEPING,
        input="{}",
        created_at=0,
        updated_at=0,
        build_id="A",
        pinned=True,
    )
    fleet = Fleet(
        served=set(), build_live_at={"A": 1000}, now=1000 + 300_000, stranded_after_ms=300_000
    )
    assert not fleet.stranded(base)  # exactly the threshold: not yet
    later = Fleet(set(), {"A": 1000}, 1000 + 300_001, 300_000)
    assert later.stranded(base)
    assert not later.stranded(Run(**{**vars(base), "pinned": False}))
    assert not later.stranded(Run(**{**vars(base), "status": Status.COMPLETED}))
    assert Fleet(set(), {}, 0, 300_000).stranded(base)  # no worker of it in the registry
