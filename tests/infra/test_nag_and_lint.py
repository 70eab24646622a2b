"""cdk-nag (AwsSolutions) finds nothing unacknowledged, every acknowledgment has a
written reason, and cfn-lint passes on the synthesized templates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from cfn_helpers import ROOT, cdk_json_context
from cfnlint.api import lint
from cfnlint.config import ManualArgs

# Suppressed, and why, in full: see docs/deploy.md ("cdk-nag").
ALLOWED_ACKNOWLEDGED_RULES = {"AwsSolutions-IAM5", "AwsSolutions-L1", "AwsSolutions-S1"}
# CDK adds `DependsOn` on a function's role next to the `GetAtt` of that role;
# redundant, not wrong.
CFN_LINT_IGNORED = ["W3005"]


def violations(scope: Any) -> list[str]:
    report = AwsSolutionsChecks().validate_scope(scope)
    return [
        f"{v.rule_name} ({v.severity}) at {[r.construct_path for r in v.violating_resources]}"
        for v in report.violations
    ]


def acknowledgments(scope: Stack) -> dict[str, str]:
    out = {}
    for construct in scope.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry.data.items():
                    out[f"{construct.node.path}: {rule}"] = reason
    return out


def test_nag_checks_run_at_all() -> None:
    """A wildcard policy without acknowledgment is reported: the checker is live."""
    stack = Stack(App(), "Probe")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=["*"]))
    assert any("AwsSolutions-IAM5" in v for v in violations(stack))


@pytest.mark.parametrize("stack_fixture", ["default_stack", "custom_stack"])
def test_no_unacknowledged_findings(stack_fixture: str, request: pytest.FixtureRequest) -> None:
    assert violations(request.getfixturevalue(stack_fixture)) == []


def test_every_acknowledgment_is_narrow_and_explained(default_stack: Stack) -> None:
    acks = acknowledgments(default_stack)
    assert acks
    for where, reason in acks.items():
        rule = where.split(": ", 1)[1].removeprefix("Annotation::")
        assert rule.split("[")[0] in ALLOWED_ACKNOWLEDGED_RULES, where
        assert not rule.startswith("AwsSolutions-IAM5[Action::"), "wildcard actions are never ok"
        assert len(reason) > 40, f"{where}: say why"


@pytest.mark.parametrize("template_fixture", ["template", "custom_template"])
def test_cfn_lint_passes(template_fixture: str, request: pytest.FixtureRequest) -> None:
    template: Template = request.getfixturevalue(template_fixture)
    matches = lint(
        json.dumps(template.to_json()),
        config=ManualArgs(regions=["us-east-1", "eu-west-1"], ignore_checks=CFN_LINT_IGNORED),
    )
    assert [f"{m.rule.id} {m.message} at {getattr(m, 'path', '')}" for m in matches] == []


def test_python_m_infra_synthesizes_with_nag_on(tmp_path: Path) -> None:
    """The entry point `cdk.json` runs, as the CLI runs it: context from the
    environment, cdk-nag registered as a validation plugin (a finding fails synth),
    no AWS credentials. Bundling off: that needs PyPI (docs/deploy.md)."""
    context = {**cdk_json_context(), "orchestrator:bundle": "false"}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_", "JSII_"))},
        "CDK_OUTDIR": str(tmp_path),
        "CDK_CONTEXT_JSON": json.dumps(context),
    }
    done = subprocess.run(
        [sys.executable, "-m", "infra"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "b'" not in done.stderr, done.stderr[-3000:]  # jsii's banner as byte literals
    template = json.loads((tmp_path / "Orchestrator.template.json").read_text())
    assert "AWS::DynamoDB::Table" in {res["Type"] for res in template["Resources"].values()}
    report = json.loads((tmp_path / "validation-report.json").read_text())
    nag = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert [p["violations"] for p in nag if p["violations"]] == []
