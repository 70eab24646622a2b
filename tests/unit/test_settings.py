"""The environment is read through pydantic-settings (orchestrator/settings.py):
good values arrive typed, bad ones stop with the variable's name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator import resources as r
from orchestrator.settings import ConfigError, Settings
from tests.conftest import ROOT


def test_an_empty_environment_gives_the_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.task_queues == ("default",)
    assert s.claim_failure_limit == 5


def test_values_arrive_typed_and_empty_ones_count_as_unset() -> None:
    s = Settings.from_env(
        {
            r.ENV_LEASE_SECONDS: "45",
            r.ENV_POLL_SECONDS: "0",
            r.ENV_TASK_QUEUES: "gpu, cpu,gpu",
            "AWS_REGION": "",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "",
            r.ENV_API_URL: "https://api.example/prod",
            r.ENV_CLAIM_FAILURE_LIMIT: "8",
            r.ENV_LOOP_STALL_SECONDS: "30",
        }
    )
    assert (s.lease_seconds, s.poll_seconds) == (45, 0)
    assert s.claim_failure_limit == 8
    assert s.loop_stall_seconds == 30
    assert s.task_queues == ("default", "gpu", "cpu")
    assert s.region == "eu-west-1"  # AWS_REGION empty: the next name is read
    assert s.endpoint_url is None
    assert s.api_url == "https://api.example/prod"


def test_a_worker_takes_its_build_id_and_tracing_from_the_settings() -> None:
    from worker import workflow
    from worker._worker import Worker

    @workflow("settings-probe")
    async def probe(ctx: object) -> None:
        return None

    s = Settings.from_env(
        {r.ENV_BUILD_ID: "v2", r.ENV_TRACING: "0", r.ENV_QUEUE_URL: "http://q.invalid/q"}
    )
    assert (s.build_id, s.tracing) == ("v2", False)
    w = Worker(workflows=[probe], settings=s)
    given = Worker(workflows=[probe], settings=s, build_id="v3")
    from worker._tracing import TracingPlugin

    assert w.build_id == "v2"
    assert not any(isinstance(p, TracingPlugin) for p in w.hooks.plugins)
    assert given.build_id == "v3"  # the argument wins over the environment
    for worker in (w, given):
        worker._executor.shutdown(wait=False)


def test_the_os_environment_is_read_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(r.ENV_LEASE_SECONDS, "12")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    s = Settings.from_env()
    assert (s.lease_seconds, s.region) == (12, "ap-south-1")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({r.ENV_LEASE_SECONDS: "ten"}, [r.ENV_LEASE_SECONDS]),
        ({r.ENV_LEASE_SECONDS: "0"}, [r.ENV_LEASE_SECONDS]),
        ({r.ENV_POLL_SECONDS: "21", r.ENV_TASK_QUEUES: "GPU"}, [r.ENV_POLL_SECONDS, "GPU"]),
        ({r.ENV_TABLE: "t"}, [r.ENV_TABLE]),
        ({r.ENV_BUILD_ID: "v 2"}, [r.ENV_BUILD_ID]),
        ({r.ENV_TRACING: "maybe"}, [r.ENV_TRACING]),
        ({r.ENV_CLAIM_FAILURE_LIMIT: "0"}, [r.ENV_CLAIM_FAILURE_LIMIT]),
        ({r.ENV_CLAIM_FAILURE_LIMIT: "101"}, [r.ENV_CLAIM_FAILURE_LIMIT]),
        ({r.ENV_LOOP_STALL_SECONDS: "0"}, [r.ENV_LOOP_STALL_SECONDS]),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        Settings.from_env(env)
    for name in names:
        assert name in str(e.value)


def test_the_cli_prints_one_line_and_exits_2_on_a_bad_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), r.ENV_LEASE_SECONDS: "soon"}
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "replay-check", "tests.workflows"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "ORCHESTRATOR_LEASE_SECONDS" in out.stderr
    assert "Traceback" not in out.stderr
