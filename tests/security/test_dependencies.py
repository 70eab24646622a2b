"""Finding 8's dependency hygiene: a production worker installs neither moto
nor Flask, the CDK CLI and pip are pinned, and the npm lock file is committed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

from tests.helpers import ROOT

LOCAL_ONLY = ("moto", "flask", "werkzeug")


def test_the_base_install_has_no_local_stack_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert not [p for p in LOCAL_ONLY if p in base]
    assert any(d.startswith("moto[server]") for d in project["optional-dependencies"]["local"])
    assert f"{project['name']}[local]" in project["optional-dependencies"]["dev"]


def test_workers_the_client_and_the_lambda_import_nothing_of_the_local_stack() -> None:
    code = (
        "import sys, worker, orchestrator.client, orchestrator.api.lambda_handler, "
        "orchestrator.sweeper, orchestrator.cli, orchestrator.dashboard.proxy\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {LOCAL_ONLY!r}])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_cdk_cli_and_pip_are_pinned_and_the_npm_lock_is_committed() -> None:
    version = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == version
    tracked = subprocess.run(
        ["git", "ls-files", "package-lock.json"], cwd=ROOT, capture_output=True, text=True
    )
    assert tracked.stdout.strip() == "package-lock.json"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^PIP_VERSION := \d+\.\d+", makefile, re.M)
    assert "--upgrade pip" not in makefile and "npm ci" in makefile
