"""Shared fixtures. One moto server per test session (HTTP on loopback, with
DynamoDB serialized as on AWS); each test gets a fresh embedded stack on it
(state reset, resources recreated) with its own SkippingClock."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from orchestrator import resources as r
from orchestrator.clock import SkippingClock
from orchestrator.local import LocalStack
from orchestrator.local.aws import MotoServer
from orchestrator.local.stack import use_local_credentials
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
use_local_credentials()

# Short lease and grace so that takeovers and sweeps happen within a test. A test
# whose worker must keep its lease through a step of seconds on a loaded machine
# gives that worker a longer lease (a late heartbeat would lose this one).
TEST_SETTINGS = Settings(lease_seconds=3, poll_seconds=1, sweep_grace_ms=1000)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer(allow_reset=True).start()
    yield server
    server.stop()


@pytest.fixture
def make_stack(moto_server: MotoServer) -> Iterator[Callable[..., LocalStack]]:
    stacks: list[LocalStack] = []

    def make(
        *,
        clock: Any = None,
        settings: Settings = TEST_SETTINGS,
        interval: float = 0.2,
        sweep_interval: float = 1.0,
    ) -> LocalStack:
        # Timers fire every 0.2 s; the sweep, which costs some 80 ms of CPU a round
        # on an empty table (every shard's Query, the DLQs), runs every second: the
        # backstop's grace in TEST_SETTINGS is a second too.
        for s in stacks:
            s.stop()
        moto_server.reset()
        stack = LocalStack(
            clock=clock or SkippingClock(),
            settings=settings,
            endpoint_url=moto_server.url,
            background_interval=interval,
            sweep_interval=max(interval, sweep_interval),
        ).start()
        stacks.append(stack)
        return stack

    yield make
    for s in stacks:
        s.stop()


@pytest.fixture
def stack(make_stack: Callable[..., LocalStack]) -> LocalStack:
    return make_stack()


@pytest.fixture
def no_batch_writes(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """DynamoDB as the deployed roles see it: none may BatchWriteItem
    (docs/security.md), so every BatchWriteItem is refused with AccessDenied,
    from the stack's own client (the local API's) and from every client made
    from now on (the workers')."""

    def refuse(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no dynamodb:BatchWriteItem"}},
            "BatchWriteItem",
        )

    event = "before-call.dynamodb.BatchWriteItem"
    stack.ddb.meta.events.register(event, refuse)
    original = botocore.session.Session.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.register(event, refuse, unique_id="test-no-batch-writes")

    monkeypatch.setattr(botocore.session.Session, "__init__", init)
    return stack


@pytest.fixture
def exec_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Step functions in tests/workflows.py append a line here each time they run."""
    path = tmp_path / "executions.log"
    path.touch()
    monkeypatch.setenv("TEST_EXEC_LOG", str(path))
    return path


def executions(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def worker_env(stack: LocalStack, exec_log: Path) -> dict[str, str]:
    env = {**os.environ, **stack.exports(), "TEST_EXEC_LOG": str(exec_log)}
    env["PYTHONPATH"] = str(ROOT)
    env[r.ENV_POLL_SECONDS] = "1"
    return env


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log line of the test as the worker's JSON formatter writes it, with
    the run context (worker/_logs.py)."""
    from worker._logs import ContextFilter, json_formatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


# Under `make test` (xdist, `--dist loadgroup`) the tests of a group run one after
# the other in one process. A conformance module starts all its scenarios in one
# module fixture, and the infra tests synthesize the CDK apps in session
# fixtures: spread over four processes and interleaved with other modules, a
# module's scenarios ran up to four times and every process synthesized. (xdist's own `xdist_group` marks do nothing under pytest 9: xdist
# renames the node ids, which pytest 9 no longer reads, so the grouping is
# decided here, by path.)
_GROUPED = {"conformance": "module", "infra": "directory"}
# The longest units first (longest-processing-time order): started late, one of
# them would run on alone after everything else has finished. The infra group
# synthesizes the CDK apps once instead of once per process.
_FIRST = (
    "tests/chaos/test_chaos_short.py",
    "tests/functional/test_worker_configs.py",
    "tests/infra/",
    "tests/functional/test_bench_smoke.py",
    "tests/conformance/",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((k for k, p in enumerate(_FIRST) if item.nodeid.startswith(p)), len(_FIRST))

    items.sort(key=rank)  # stable: the order within a rank is the collection's


def _group(nodeid: str) -> str:
    """The scheduling unit of a test: its module or directory when grouped, else itself."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if len(parts) >= 3 and parts[0] == "tests" and parts[1] in _GROUPED:
        return parts[1] if _GROUPED[parts[1]] == "directory" else path
    return nodeid


@pytest.hookimpl(optionalhook=True)  # a hook of xdist's: unknown without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Grouped(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return Grouped(config, log)
