"""Every pattern that validates outside input matches the whole text: a check
with `re.match` and a pattern ending in `$` passes "rate(5 minutes)\n", which
was then stored and sent on. The walk below finds each module-level pattern the
API, the store and the worker validate with, and each call that uses one."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import safejson
from orchestrator.errors import BadInputError
from orchestrator.schedule_expr import parse
from orchestrator.store.callbacks import TOKEN_RE

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "worker")
SKIP = ("testing_faults",)  # test tooling that reads the journal, not input


def _modules() -> list[Path]:
    return [
        p
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if not any(s in p.parts for s in SKIP)
    ]


def _patterns() -> dict[str, re.Pattern[str]]:
    """Module-level compiled patterns of the product, by qualified name."""
    out: dict[str, re.Pattern[str]] = {}
    seen: set[int] = set()
    for path in _modules():
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        dotted = dotted.removesuffix(".__init__")
        if dotted.endswith("__main__"):
            continue
        mod = importlib.import_module(dotted)
        for name, value in vars(mod).items():
            if isinstance(value, re.Pattern) and id(value) not in seen:
                seen.add(id(value))  # an imported pattern is walked where it is defined
                out[f"{dotted}.{name}"] = value
    return out


def test_no_product_code_validates_with_a_match_that_stops_short() -> None:
    """`X.match(...)` or `re.match(...)` on a validation pattern: refused."""
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "match":
                continue
            target = node.func.value
            name = target.id if isinstance(target, ast.Name) else ""
            if name == "re" or name.isupper() or name.lstrip("_").isupper():
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], f"use fullmatch: {found}"


PATTERNS = _patterns()


def test_the_walk_finds_the_patterns_the_api_validates_with() -> None:
    from orchestrator import model, schedule_expr

    walked = {id(p) for p in PATTERNS.values()}
    wanted = [
        model.WORKFLOW_ID_RE,
        model.WORKFLOW_NAME_RE,
        model.SIGNAL_NAME_RE,
        model.SCHEDULE_NAME_RE,
        model.STEP_NAME_RE,
        TOKEN_RE,
        schedule_expr._RATE,
        schedule_expr._CRON,
    ]
    assert all(id(p) in walked for p in wanted)


@pytest.mark.parametrize("name", sorted(PATTERNS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_pattern_accepts_its_text_with_a_trailing_newline(
    name: str, data: st.DataObject
) -> None:
    pattern = PATTERNS[name]
    text = data.draw(st.from_regex(pattern, fullmatch=True))
    assert pattern.fullmatch(text)
    for tail in ("\n", "\r\n"):
        assert pattern.fullmatch(text + tail) is None


@pytest.mark.parametrize(
    "expression", ["rate(5 minutes)\n", "cron(0 9 * * ? *)\n", "rate(٣ minutes)", "rate(²0 hours)"]
)
def test_an_expression_with_a_trailing_newline_or_other_digits_is_refused(
    expression: str,
) -> None:
    with pytest.raises(ValueError):
        parse(expression)


def test_a_callback_token_with_a_trailing_newline_is_not_one() -> None:
    assert TOKEN_RE.fullmatch("A" * 32)
    assert TOKEN_RE.fullmatch("A" * 32 + "\n") is None


@pytest.mark.parametrize("text", ["²", "٣", "1" * 5000, "-1", "+3", " 3", "3 ", "", "0x10"])
def test_numbers_from_outside_are_ascii_digits_within_their_range(text: str) -> None:
    with pytest.raises(BadInputError, match="ASCII digits"):
        safejson.int_param(text, what="generation", lo=0, hi=10)
    assert not safejson.is_ascii_count(text) or (text.isascii() and text.isdigit())


def test_a_number_within_its_range_is_read() -> None:
    assert safejson.int_param("7", what="limit", lo=1, hi=200) == 7
    with pytest.raises(BadInputError, match="from 1 to 200"):
        safejson.int_param("201", what="limit", lo=1, hi=200)


def test_duplicate_keys_and_long_decimals_are_refused_not_resolved_silently() -> None:
    with pytest.raises(BadInputError, match="appears twice"):
        safejson.loads('{"name": "a", "name": "b"}')
    with pytest.raises(BadInputError, match="appears twice"):
        safejson.loads('[{"x": {"k": 1, "k": 1}}]')
    with pytest.raises(BadInputError, match="decimal is longer"):
        safejson.loads("0." + "1" * 100_000)
    assert safejson.loads('{"a": 0.1, "b": {"a": 2}}') == {"a": 0.1, "b": {"a": 2}}


def test_a_callback_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token a shell user passes as an argument: "-Xq..." would be an option."""
    from worker.operations import callback

    drawn = iter(["-" + "A" * 31, "-" + "B" * 31, "C" * 32])
    monkeypatch.setattr(callback.secrets, "token_urlsafe", lambda n: next(drawn))
    assert callback.new_token() == "C" * 32
