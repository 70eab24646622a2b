"""Synthesize once per session, with Lambda bundling skipped (no pip, no PyPI).

`default_*` is the app exactly as `cdk synth` builds it (cdk.json's feature flags,
default props). `custom_*` is `Orchestrator` added as one construct to a user's own
stack with every prop changed, which is how a CDK user embeds it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, Duration, Stack
from aws_cdk.assertions import Template
from cfn_helpers import (
    GPU_LIMITS,
    JWT_AUDIENCE,
    JWT_ISSUER,
    NIGHTLY,
    WORKER_PRINCIPALS,
    cdk_json_context,
)

from infra import ApiAuth, Orchestrator, Retention, TableBilling
from infra.app import build_app
from infra.stack import OrchestratorStack

SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}


@pytest.fixture(scope="session")
def default_stack() -> OrchestratorStack:
    # cdk-nag runs in test_nag_and_lint.py through validate_scope, not as a plugin here.
    _, stack = build_app({**cdk_json_context(), **SKIP_BUNDLING, "orchestrator:nag": False})
    return stack


@pytest.fixture(scope="session")
def template(default_stack: OrchestratorStack) -> Template:
    return Template.from_stack(default_stack)


@pytest.fixture(scope="session")
def custom_stack() -> Stack:
    app = App(context={**cdk_json_context(), **SKIP_BUNDLING})
    stack = Stack(app, "UserStack")
    Orchestrator(
        stack,
        "Workflows",
        billing=TableBilling.provisioned(read_capacity=3, write_capacity=2),
        lease_seconds=90,
        api_auth=ApiAuth.jwt(issuer=JWT_ISSUER, audience=JWT_AUDIENCE),
        retention=Retention.ephemeral(),
        worker_principals=WORKER_PRINCIPALS,
        name_prefix="",
        max_message_age=Duration.hours(2),
        task_queues={"gpu": GPU_LIMITS},
        schedules=[NIGHTLY],
    )
    return stack


@pytest.fixture(scope="session")
def custom_template(custom_stack: Stack) -> Template:
    return Template.from_stack(custom_stack)
