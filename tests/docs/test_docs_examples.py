"""Every Python block of docs/*.md runs as written, as the README's do
(tests/docs/test_readme.py). A block that cannot run alone says so in the
Markdown, on the line before it:

    <!-- fragment: why -->

and is then only compiled (top-level await allowed). A block that runs but
slowly (a CDK synth, about 30 s) is marked `<!-- slow: why -->` and runs with
`pytest -m slow` (left out of `make test`). A block that defines
`test_*` functions has them called. Nothing is skipped silently: every block
is either run or marked, and the marked ones must still compile.
"""

from __future__ import annotations

import ast
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)(?:<!-- (?P<mark>fragment|slow): (?P<why>[^\n]+?) -->\n[ \t]*)?```python\n"
    r"(?P<code>.*?)^(?P=indent)```",
    re.S | re.M,
)


def python_blocks(path: Path) -> list[tuple[int, str | None, str]]:
    """(line, "fragment", "slow" or None, code) of each ```python block."""
    text = path.read_text()
    found = []
    for m in BLOCK.finditer(text):
        line = text[: m.start("code")].count("\n") + 1
        found.append((line, m.group("mark"), textwrap.dedent(m.group("code"))))
    assert len(found) == text.count("```python\n"), f"{path.name}: a python block was not parsed"
    return found


BLOCKS = [(p, line, why, code) for p in DOCS for line, why, code in python_blocks(p)]


def _id(block: tuple[Path, int, str | None, str]) -> str:
    return f"{block[0].name}:{block[1]}"


def test_the_docs_have_python_blocks_and_some_run() -> None:
    assert len(BLOCKS) >= 5
    assert sum(1 for _, _, why, _ in BLOCKS if why is None) >= 2


@pytest.mark.parametrize("block", [b for b in BLOCKS if b[2] == "fragment"], ids=_id)
def test_a_fragment_compiles(block: tuple[Path, int, str | None, str]) -> None:
    path, line, _, code = block
    compile(code, f"{path.name}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(b, marks=[pytest.mark.slow] if b[2] == "slow" else [], id=_id(b))
        for b in BLOCKS
        if b[2] != "fragment"
    ],
)
def test_a_block_runs(
    block: tuple[Path, int, str | None, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, line, _, code = block
    monkeypatch.chdir(tmp_path)  # a CDK app's synth writes cdk.out here
    monkeypatch.setenv(
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION",
        os.environ.get("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20"),
    )
    namespace: dict[str, Any] = {"__name__": f"docs_{path.stem}_{line}"}
    exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
    for name, fn in list(namespace.items()):
        if name.startswith("test_") and callable(fn):
            fn()
