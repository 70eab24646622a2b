"""Installing by name must never fetch someone else's package: PyPI's
`orchestrator` and `worker` are unrelated projects, so the distribution has a
name of its own, hosts install the wheel `make wheel` builds, and no doc or
message tells anyone to `pip install orchestrator`. The wheel's build and
contents are checked under the `slow` marker (about 30 s on a loaded machine);
the default run checks what the build is made from."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

TAKEN_ON_PYPI = {"orchestrator", "worker"}  # unrelated packages of those names
# `pip install orchestrator`, `pip install 'orchestrator[otel]'`, "worker", -U, etc.
BY_NAME = re.compile(r"pip3? install (?:-[-\w]+ )*['\"]?(?:orchestrator|worker)\b(?![./\w-])")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _wheel_name() -> str:
    return _project()["project"]["name"].replace("-", "_")


def test_the_distribution_has_a_name_of_its_own() -> None:
    project = _project()
    name = project["project"]["name"]
    assert name not in TAKEN_ON_PYPI and name == "dynamo-durable-workflows"
    assert project["project"]["scripts"]["orchestrator"] == "orchestrator.cli:main"
    assert f"{name}[local]" in project["project"]["optional-dependencies"]["dev"]
    assert any(d.startswith("build>=") for d in project["project"]["optional-dependencies"]["dev"])
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"orchestrator*", "worker*"} <= set(found)
    assets = set(project["tool"]["setuptools"]["package-data"]["orchestrator.dashboard"])
    for path in (ROOT / "orchestrator" / "dashboard").iterdir():
        if path.suffix in (".js", ".css", ".html"):
            assert f"*{path.suffix}" in assets, path.name


def _texts() -> list[Path]:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    keep = (".md", ".py", ".toml", ".service", ".txt", ".cfg", ".js")
    return [
        ROOT / p
        for p in tracked
        if (p.endswith(keep) or p.endswith("Containerfile") or p == "Makefile")
        and (ROOT / p).is_file()
        and p != "tests/security/test_distribution.py"
    ]


def test_no_doc_or_message_installs_the_package_by_a_name_pypi_gives_to_others() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _texts()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if BY_NAME.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "line",
    ["pip install orchestrator", "pip install 'orchestrator[otel]'", "pip install -U worker"],
)
def test_the_check_sees_an_install_by_name(line: str) -> None:
    assert BY_NAME.search(line)


def test_the_containerfile_and_make_install_the_wheel() -> None:
    containerfile = (ROOT / "deploy" / "worker" / "Containerfile").read_text()
    assert f"pip install /tmp/wheels/{_wheel_name()}-*-py3-none-any.whl" in containerfile
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(
        r"^wheel: .*\n\t\$\(BIN\)/python -m build --wheel --outdir dist \.", makefile, re.M
    )


@pytest.mark.slow
def test_the_wheel_holds_the_packages_the_dashboard_and_the_command(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [wheel] = tmp_path.glob("*.whl")
    version = _project()["project"]["version"]
    assert wheel.name == f"{_wheel_name()}-{version}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "orchestrator/__init__.py",
        "worker/__init__.py",
        "orchestrator/cli/__init__.py",
    } <= names
    for path in (ROOT / "orchestrator" / "dashboard").iterdir():
        if path.suffix in (".js", ".css", ".html", ".py"):
            assert f"orchestrator/dashboard/{path.name}" in names, path.name
    info = f"{_wheel_name()}-{version}.dist-info"
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "Name: dynamo-durable-workflows" in metadata
    scripts = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "orchestrator = orchestrator.cli:main" in scripts
