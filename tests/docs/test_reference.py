"""The documentation site builds offline, strictly, with the reference
generated from the code (mkdocs + mkdocstrings), and a broken reference fails
the build (`make docs`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

MKDOCS = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(MKDOCS is None, reason="needs the docs extra (mkdocs)")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    assert MKDOCS is not None
    return subprocess.run(
        [MKDOCS, "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_site_builds_with_the_sdk_reference(tmp_path: Path) -> None:
    done = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    worker = (tmp_path / "site" / "reference" / "worker" / "index.html").read_text()
    for name in ("run_until_stopped", "wait_for_signal", "RetryPolicy", "workflow_id"):
        assert name in worker, name
    client = (tmp_path / "site" / "reference" / "client" / "index.html").read_text()
    assert "terminate" in client and "inbox" in client


def test_a_broken_reference_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# x\n\n::: worker.NoSuchThing\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        "site_name: x\ndocs_dir: docs\nstrict: true\nplugins:\n  - mkdocstrings:\n"
        f"      handlers:\n        python:\n          paths: [{ROOT}]\n"
    )
    done = _build(config, tmp_path / "site")
    assert done.returncode != 0 and "worker.NoSuchThing" in done.stderr
