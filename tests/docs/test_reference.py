"""The documentation site builds offline, strictly, with the reference
generated from the code (mkdocs + mkdocstrings, and the HTTP API from the
OpenAPI document by docs/hooks/http_api.py), and a broken reference fails the
build (`make docs`)."""

from __future__ import annotations

import html
import re
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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's site, built once for this module's tests."""
    out = tmp_path_factory.mktemp("docs") / "site"
    done = _build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_site_builds_with_the_sdk_reference(site: Path) -> None:
    worker = (site / "reference" / "worker" / "index.html").read_text()
    names = ("run_until_stopped", "wait_for_signal", "RetryPolicy", "workflow_id")
    plugins = ("invocation_start", "attempt_end", "AT_MOST_ONCE_PER_RETRY", "BatchSerializer")
    for name in (*names, *plugins):
        assert name in worker, name
    client = (site / "reference" / "client" / "index.html").read_text()
    assert "terminate" in client and "inbox" in client


def test_the_http_reference_lists_every_operation_of_the_openapi_document(site: Path) -> None:
    from orchestrator.api.openapi import OPERATIONS

    page = html.unescape((site / "reference" / "http-api" / "index.html").read_text())
    assert "openapi-operations" not in page  # the marker was replaced
    headings = re.findall(r"<h3 id=\"[^\"]*\"><code>(\w+ [^<]+)</code>", page)
    assert sorted(headings) == sorted(f"{op.method} {op.path}" for op in OPERATIONS)
    for op in OPERATIONS:
        assert f"Operation id <code>{op.operation_id}</code>" in page, op.operation_id
    # Body fields come from the pydantic models: the bulk body's, for one.
    assert "<code>confirm_count</code>" in page and "<code>created_after</code>" in page


def test_the_http_reference_hook_refuses_a_page_without_its_marker() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "http_api", ROOT / "docs" / "hooks" / "http_api.py"
    )
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)

    class File:
        src_uri = hook.PAGE

    class Page:
        file = File()

    with pytest.raises(ValueError, match="marker"):
        hook.on_page_markdown("# HTTP API\n", page=Page())


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
