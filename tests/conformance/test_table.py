"""docs/conformance.md and the tests agree: every requirement of the ported
suites has one row, naming an existing test or the reason it does not apply."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conformance.summary import SUITES, requirements

HERE = Path(__file__).resolve().parent
# The suite's published requirements: the wheel is downloaded once into the
# virtual environment (pip, from the package index `make install` uses).
PACKAGE = "aws-durable-execution-conformance-tests"
VERSION = "1.0.0"
CACHE = Path(sys.prefix) / f"conformance-suite-{VERSION}"
# Requirements per suite in aws-durable-execution-conformance-tests.
SIZES = {
    "step": 20,
    "wait": 5,
    "child": 18,
    "callback": 19,
    "invoke": 16,
    "wait_for_condition": 13,
    "wait_for_callback": 15,
    "parallel": 22,
    "map": 20,
    "plugin": 7,
}


def _tests(suite: str) -> set[str]:
    tree = ast.parse((HERE / f"test_{suite}.py").read_text())
    return {
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef) and re.match(r"test_\d+_\d+_", n.name)
    }


def test_every_requirement_has_one_row_with_a_test_or_a_reason() -> None:
    reqs = requirements()
    for suite, prefix in SUITES.items():
        rows = [r for r in reqs if r.suite == suite]
        ids = [r.id for r in rows]
        assert ids == [f"{prefix}-{i}" for i in range(1, SIZES[suite] + 1)], suite
        for r in rows:
            assert r.test is not None or r.reason, r.id


def test_rows_and_tests_name_each_other() -> None:
    reqs = requirements()
    for suite in SUITES:
        named = {r.test for r in reqs if r.suite == suite and r.test is not None}
        assert named == _tests(suite), suite
        for r in reqs:
            if r.suite == suite and r.test is not None:
                assert r.test.startswith(f"test_{r.id.replace('-', '_')}_"), r.test


def _published_ids() -> set[str]:
    wheels = sorted(CACHE.glob("*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.14",
                "--dest",
                str(CACHE),
                f"{PACKAGE}=={VERSION}",
            ],
            check=True,
            timeout=120,
        )
        wheels = sorted(CACHE.glob("*.whl"))
    with zipfile.ZipFile(wheels[-1]) as whl:
        names = [n for n in whl.namelist() if "/test_requirements/" in n and n.endswith(".yaml")]
    return {Path(n).stem for n in names}


def test_every_published_requirement_is_tested_or_listed() -> None:
    """A requirement the suite adds (a new version pinned above) cannot go
    missing: every id it publishes has a row here, and every row is published."""
    published = _published_ids()
    assert len(published) == sum(SIZES.values())
    assert published == {r.id for r in requirements()}
