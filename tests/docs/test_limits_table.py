"""The Limits table of docs/architecture.md, walked against the code: every row
names where its limit lives (a constant, a module or a setting), every
constant it names exists, and a number a row states for an int constant is the
constant's value. Every `MAX_*` constant of the modules that bound input is
in the table, or listed below with why it is not a user-facing limit."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrator import resources as r

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("orchestrator", "orchestrator.api", "orchestrator.store", "worker", "worker.operations")
# Modules whose MAX_* constants are limits a user can meet.
LIMIT_MODULES = (
    "orchestrator.model",
    "orchestrator.safejson",
    "worker.operations.s3_map",
    "orchestrator.api.jobs",
    "orchestrator.api.bulk",
)
NOT_USER_LIMITS: dict[str, str] = {
    "MAX_JOB_ERRORS": "how many failed pages in a row fail a job: a retry policy, not a bound",
}
REF = re.compile(r"^(?P<mod>[a-z_][a-z_0-9]*(?:/[a-z_0-9]+)*)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
PATH = re.compile(r"^[a-z_]+(?:/[a-z_0-9]+)*\.py$")
ENV = re.compile(r"^ORCHESTRATOR_[A-Z_]+$")


def _rows() -> list[list[str]]:
    text = DOC.read_text()
    section = text[text.index("\n## Limits\n") :]
    section = section[: section.index("\n## ", 5)] if "\n## " in section[5:] else section
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]


def _modules() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for pkg in PACKAGES:
        package = importlib.import_module(pkg)
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg:
                continue
            module = importlib.import_module(f"{pkg}.{info.name}")
            found.setdefault(info.name, module)  # a short name: the first package's
            found[f"{pkg.split('.')[-1]}/{info.name}"] = module
    return found


def _renderings(value: int) -> set[str]:
    out = {str(value), f"{value:,}"}
    for unit, size in (("KB", 1024), ("MB", 1024 * 1024)):
        if value % size == 0:
            out.add(f"{value // size} {unit}")
            out.add(f"{value // size:,} {unit}")
    if value % 86_400 == 0:
        out.add(f"{value // 86_400} days")
    return out


def _refs(row: list[str]) -> list[str]:
    return re.findall(r"`([^`]+)`", " | ".join(row))


ROWS = _rows()


def test_the_table_has_rows() -> None:
    assert len(ROWS) >= 30


@pytest.mark.parametrize("row", ROWS, ids=[row[0][:40] for row in ROWS])
def test_each_row_names_where_its_limit_lives_and_its_numbers_are_the_codes(
    row: list[str],
) -> None:
    modules = _modules()
    envs = {v for k, v in vars(r).items() if k.startswith("ENV_")}
    named = 0
    for ref in _refs(row):
        if ENV.fullmatch(ref):
            assert ref in envs, f"{ref} is not a setting"
            named += 1
        elif PATH.fullmatch(ref):
            assert (ROOT / ref).exists() or (ROOT / "orchestrator" / ref).exists(), ref
            named += 1
        elif (m := REF.fullmatch(ref)) is not None and m["mod"] in modules:
            value: Any = getattr(modules[m["mod"]], m["name"], None)
            assert value is not None, f"{ref}: no such name"
            named += 1
            if isinstance(value, int) and not isinstance(value, bool):
                text = " ".join(row[:2])
                assert any(x in text for x in _renderings(value)), (
                    f"{ref} is {value}; the row says: {row[1]}"
                )
    assert named, f"row {row[0]!r} names no constant, module or setting"


def test_every_max_constant_of_the_input_modules_is_in_the_table() -> None:
    refs = {ref.rsplit(".", 1)[-1] for row in ROWS for ref in _refs(row)}
    missing = []
    for name in LIMIT_MODULES:
        module = importlib.import_module(name)
        for attr in vars(module):
            if attr.startswith("MAX_") and attr not in refs and attr not in NOT_USER_LIMITS:
                missing.append(f"{name}.{attr}")
    assert missing == [], f"limits the table does not name: {missing}"
