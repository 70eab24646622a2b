"""The docs' route and permission tables are the template's and the API's
(`infra/doc_tables.py`): each generated block equals a fresh render of the
default app, and the render refuses routes the API and the template disagree on."""

from __future__ import annotations

import copy
import difflib
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra import doc_tables as dt
from infra.stack import OrchestratorStack


@pytest.fixture(scope="module")
def template_json(template: Template) -> dict[str, Any]:
    return dict(template.to_json())


@pytest.fixture(scope="module")
def tables(default_stack: OrchestratorStack, template_json: dict[str, Any]) -> dict[str, str]:
    return dt.render(default_stack, template_json)


def test_the_docs_show_each_table_as_the_template_and_the_routes_render_it(
    tables: dict[str, str],
) -> None:
    assert dt.shown() == set(tables), "a generated table is missing from the docs"
    for path in dt.DOCS:
        text = path.read_text()
        fresh = dt.rewrite(text, tables)
        diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True), fresh.splitlines(keepends=True), "docs", "fresh"
            )
        )
        assert not diff, f"{path.name} differs; run `python -m infra.doc_tables --write`:\n{diff}"


def test_the_tables_name_no_hashed_logical_id(
    tables: dict[str, str], template_json: dict[str, Any]
) -> None:
    text = "".join(tables.values())
    assert not [logical_id for logical_id in template_json["Resources"] if logical_id in text]


def test_the_tables_have_a_row_per_route_and_per_statement(
    tables: dict[str, str], template_json: dict[str, Any]
) -> None:
    from orchestrator.api.openapi import OPERATIONS

    assert len(tables["api-routes"].splitlines()[2:]) == len(OPERATIONS)
    policies = [
        r for r in template_json["Resources"].values() if r["Type"].startswith("AWS::IAM::")
    ]
    statements = sum(
        len(r["Properties"]["PolicyDocument"]["Statement"])
        for r in policies
        if "PolicyDocument" in r["Properties"]
    )
    roles = sum(1 for r in policies if r["Type"] == "AWS::IAM::Role")
    managed = sum(1 for r in policies if r["Type"] == "AWS::IAM::ManagedPolicy")
    iam_rows = tables["iam-roles"].splitlines()[2:]
    assert len(iam_rows) == statements
    assert sum(1 for row in iam_rows if not row.startswith("|  |")) == roles + managed


def test_a_deployed_route_the_api_does_not_serve_fails_the_render(
    default_stack: OrchestratorStack,
    template_json: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dt, "OPERATIONS", dt.OPERATIONS[1:])
    with pytest.raises(dt.DocTablesError, match="does not serve"):
        dt.render(default_stack, template_json)


def test_a_route_no_group_grants_fails_the_render(
    default_stack: OrchestratorStack, template_json: dict[str, Any]
) -> None:
    tampered = copy.deepcopy(template_json)
    policy = default_stack.orchestrator.api.policies["start"]
    logical_id = default_stack.resolve(policy.node.default_child.logical_id)  # type: ignore[union-attr]
    tampered["Resources"][logical_id]["Properties"]["PolicyDocument"]["Statement"] = []
    with pytest.raises(dt.DocTablesError, match=r"POST /workflows is in route groups \[\]"):
        dt.render(default_stack, tampered)
