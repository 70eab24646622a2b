"""The worker's deployment files in deploy/worker/ (docs/deploy.md): the
systemd unit passes `systemd-analyze verify` (when available), and the
container file parses as a Dockerfile that runs the worker unprivileged with
a stop timeout the drain fits in (hadolint when available, else by parsing)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT

UNIT = ROOT / "deploy" / "worker" / "orchestrator-worker.service"
CONTAINERFILE = ROOT / "deploy" / "worker" / "Containerfile"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def _unit() -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, value = line.split("=", 1)
        sections[current][key] = value
    return sections


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    fake = tmp_path / "orchestrator"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/orchestrator/venv/bin/orchestrator", str(fake)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_systemd_unit_drains_before_it_is_killed() -> None:
    service = _unit()["Service"]
    assert service["KillSignal"] == "SIGTERM" and service["User"] != "root"
    grace = float(re.search(r"--grace (\S+)", service["ExecStart"]).group(1))  # type: ignore[union-attr]
    assert int(service["TimeoutStopSec"]) > 20 + grace  # the open long poll, then the grace
    assert "orchestrator worker" in service["ExecStart"]


def test_the_containerfile_parses_and_runs_the_worker_unprivileged() -> None:
    if shutil.which("hadolint"):
        subprocess.run(["hadolint", str(CONTAINERFILE)], check=True)
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    steps = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    words = [s.split(None, 1)[0] for s in steps]
    assert words[0] == "FROM"
    assert set(words) <= INSTRUCTIONS, set(words) - INSTRUCTIONS
    args = {w: s.split(None, 1)[1] for w, s in zip(words, steps, strict=True)}
    assert args["USER"].split(":")[0] not in ("root", "0")
    assert json.loads(args["ENTRYPOINT"]) == ["orchestrator", "worker"]  # exec form: gets SIGTERM
    assert args["STOPSIGNAL"] == "SIGTERM"
    for source in re.findall(r"^COPY (\S+)", text, flags=re.M):
        if source.startswith("dist/"):  # the wheel `make wheel` builds, by its distribution name
            name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
            assert source == f"dist/{name.replace('-', '_')}-*-py3-none-any.whl", source
            continue
        assert source == "app" or (ROOT / source).exists(), source
