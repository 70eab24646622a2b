"""The docs speak of the repository and of what the code does: they name no
file outside it (a design file of the process, a path in another project), and
no issue, branch or process step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROCESS = re.compile(
    r"\bthe issue\b|\bissue #\d+|\bthis branch\b|\bstop \d+\b|DESIGN\.md|STYLE\.md", re.I
)
# A backticked path into one of the repository's folders (`orchestrator/api/app.py`).
TOP = ("orchestrator", "worker", "tests", "docs", "deploy", "infra", "examples", "benchmarks")
PATH = re.compile(r"`((?:" + "|".join(TOP) + r")/[\w./*<>-]*)`")
OUTPUTS = ("tests/out/", "benchmarks/out/")  # written by runs, not kept in the repository
SCOPES = re.compile(r"orchestrator/(read|start|signal|operate|admin)\Z")  # OAuth scopes, not paths


def _exists(path: str) -> bool:
    if "*" in path:
        return any(ROOT.glob(path.rstrip("/")))
    if (ROOT / path).exists():
        return True
    module, _, _attr = path.rpartition(".")  # `worker/_state.RunState`: a module's attribute
    return bool(module) and (ROOT / f"{module}.py").exists()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_a_doc_speaks_of_no_issue_branch_or_process_file(doc: Path) -> None:
    found = [
        f"{doc.name}:{n}: {m.group(0)}"
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        for m in PROCESS.finditer(line)
    ]
    assert found == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        for path in PATH.findall(line):
            if path.startswith(OUTPUTS) or "<" in path or SCOPES.match(path):
                continue
            if not _exists(path):
                missing.append(f"{doc.name}:{n}: {path}")
    assert missing == []
