"""The Lambda code asset, built without Docker.

The asset is the `orchestrator` package (minus the local stack and caches) plus the
third-party packages the Lambda Python runtime lacks (pydantic with its compiled
core, aws-lambda-powertools). `pip install --platform manylinux2014_x86_64
--implementation cp --python-version 3.12 --only-binary=:all:` fetches wheels built
for the Lambda platform whatever the host is, so `cdk synth` needs PyPI but no
Docker engine. boto3 is not bundled: the runtime provides it.

The versions are pinned to the ones installed next to the CDK app, so the functions
run what the tests ran, and every package (transitive ones too) is installed from
`lambda-requirements.txt` with `--require-hashes` (`python -m infra.lock` writes it).
The lock's digest is part of the bundling command, which is part of the asset hash:
a version change produces a new asset and a code update on deploy.

Context `{"aws:cdk:bundling-stacks": []}` skips bundling (fast synth in tests).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "orchestrator"
LAMBDA_LOCK = Path(__file__).resolve().parent / "lambda-requirements.txt"
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12
LAMBDA_ARCHITECTURE = lambda_.Architecture.X86_64
PIP_PLATFORM = "manylinux2014_x86_64"  # matches LAMBDA_ARCHITECTURE
PIP_PYTHON_VERSION = "3.12"  # matches LAMBDA_RUNTIME; without it pip picks the host's wheels
BUNDLED_DISTRIBUTIONS = ("pydantic", "pydantic-settings", "aws-lambda-powertools")
# Left out of the asset: the local stack (moto, typer, rich are not in the asset),
# tests and every kind of cache.
EXCLUDE = (
    "local",
    "tests",
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
)


def lambda_requirements() -> tuple[str, ...]:
    """`name==version` for each bundled distribution, as installed here."""
    reqs = []
    for dist in BUNDLED_DISTRIBUTIONS:
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            reqs.append(dist)
    return tuple(reqs)


def locked_pins() -> dict[str, str]:
    """name -> version of every package in the hash lock."""
    pins = {}
    for line in LAMBDA_LOCK.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(" ")[0].split("==")
            pins[name] = version
    return pins


def pip_command(target: str, requirements: Sequence[str], *, lock: Path | None = None) -> list[str]:
    """The pip arguments that fetch Lambda-platform wheels into `target`: from the
    hash lock when given (every package pinned and hashed), else `requirements`."""
    wanted = ["--require-hashes", "-r", str(lock)] if lock else list(requirements)
    return [
        "install",
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        PIP_PYTHON_VERSION,
        "--only-binary=:all:",
        "--no-compile",  # host bytecode would be for the wrong Python
        "--disable-pip-version-check",
        "--quiet",
        "--target",
        target,
        *wanted,
    ]


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Bundles on the host with pip; never falls back to Docker."""

    def __init__(
        self,
        *,
        requirements: Sequence[str],
        package_dir: Path = PACKAGE_DIR,
        lock: Path | None = LAMBDA_LOCK,
    ) -> None:
        self._requirements = tuple(requirements)
        self._package_dir = package_dir
        self._lock = lock

    def try_bundle(self, output_dir: str, *_options: Any, **_kw: Any) -> bool:
        # jsii passes the BundlingOptions struct positionally; they are not needed here.
        cmd = [
            sys.executable,
            "-m",
            "pip",
            *pip_command(output_dir, self._requirements, lock=self._lock),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                "bundling the Lambda dependencies failed (pip needs to reach PyPI or a "
                f"mirror):\n$ {' '.join(cmd)}\n{done.stderr.strip()}"
            )
        shutil.copytree(
            self._package_dir,
            Path(output_dir) / self._package_dir.name,
            ignore=shutil.ignore_patterns(*EXCLUDE),
        )
        return True


def lambda_code() -> lambda_.AssetCode:
    """One asset for both functions (the API and the sweeper share the package)."""
    reqs = lambda_requirements()
    lock_digest = hashlib.sha256(LAMBDA_LOCK.read_bytes()).hexdigest()[:16]
    docker_equivalent = (
        f"# lock {lock_digest} ({', '.join(reqs)})\n"
        f"pip {' '.join(pip_command('/asset-output', reqs, lock=Path(LAMBDA_LOCK.name)))}"
        " && cp -r /asset-input /asset-output/orchestrator"
        " && rm -rf /asset-output/orchestrator/local"
        " && find /asset-output/orchestrator -name __pycache__ -prune -exec rm -rf {} +"
    )
    return lambda_.Code.from_asset(
        str(PACKAGE_DIR),
        exclude=list(EXCLUDE),
        bundling=BundlingOptions(
            # Used only if local bundling declined, which PipLocalBundling never does;
            # the command documents the equivalent and pins the asset hash to `reqs`.
            image=LAMBDA_RUNTIME.bundling_image,
            command=["bash", "-c", docker_equivalent],
            local=PipLocalBundling(requirements=reqs),
        ),
    )
