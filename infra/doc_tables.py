"""The permission and route tables of the docs, rendered from the synthesized
template of the default app and from the API's route list.

The docs hold each table between `<!-- generated: NAME -->` and
`<!-- end generated -->`; nothing between the markers is written by hand:

- `iam-roles`: every role and managed policy of the template, statement by
  statement (actions, resources, conditions), with what may assume the role or
  the stack output that names the policy;
- `api-routes`: every route of the API (`orchestrator.api.openapi.OPERATIONS`),
  the route group whose managed policy grants it in the template, and its summary.

Resources are named by the path of the construct that makes them, below the
`Orchestrator` construct (`<State/Table>`), never by a hashed logical id, so a
table changes only when a grant or a route does. Rendering fails (`DocTablesError`)
when the app serves a route the template does not deploy or the other way round,
or when a deployed route is in no group or in two.

    python -m infra.doc_tables           # print the tables
    python -m infra.doc_tables --write   # rewrite them in the docs
    python -m infra.doc_tables --check   # exit 1 if the docs differ

`tests/infra/test_doc_tables.py` fails when the docs differ from a fresh render.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aws_cdk import CfnElement

from infra.nag import flatten_cfn_reference
from infra.stack import OrchestratorStack
from orchestrator.api.openapi import OPERATIONS

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "security.md",)
END = "<!-- end generated -->"
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(" + re.escape(END) + ")", re.S)
# `arn:<partition>:<service>:<region>:<account>:` in front of a flattened ARN,
# each part a literal or a flattened reference (`<AWS::Region>`).
_PART = r"(?:<[^>]*>|[^:<]*)"
ARN_PREFIX = re.compile(rf"^arn:{_PART}:[\w-]+:{_PART}:{_PART}:")
STAGE = "/$default/"


class DocTablesError(Exception):
    """The template and the API's routes disagree; nothing can be rendered."""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _shape(method: str, path: str) -> tuple[str, str]:
    """A route as API Gateway's ARNs see it: path parameters are `*`."""
    return method, re.sub(r"\{[^}]+\}", "*", path)


class _Names:
    """Readable names for the template's resources: construct paths."""

    def __init__(self, stack: OrchestratorStack, template: Mapping[str, Any]) -> None:
        root = stack.orchestrator
        self.labels: dict[str, str] = {}
        for node in root.node.find_all():
            if isinstance(node, CfnElement):
                path = node.node.path[len(root.node.path) + 1 :].removesuffix("/Resource")
                self.labels[str(stack.resolve(node.logical_id))] = path
        resources = template["Resources"]
        # Schedule groups are named at synth time: ARNs carry the name, not a reference.
        self.literals = {
            str(res["Properties"]["Name"]): self.labels.get(logical_id, logical_id)
            for logical_id, res in resources.items()
            if res["Type"] == "AWS::Scheduler::ScheduleGroup"
            and isinstance(res["Properties"].get("Name"), str)
        }
        self.outputs = {
            str(out["Value"]["Ref"]): name
            for name, out in template.get("Outputs", {}).items()
            if isinstance(out.get("Value"), dict) and "Ref" in out["Value"]
        }

    def of(self, logical_id: str) -> str:
        return f"`<{self.labels.get(logical_id, logical_id)}>`"

    def resource(self, value: Any, *, whole_arn: bool = False) -> str:
        """`value` flattened, its references named; the ARN's partition, service,
        region and account dropped unless `whole_arn` (a principal's)."""
        flat = flatten_cfn_reference(value)
        if not whole_arn:
            flat = ARN_PREFIX.sub("", flat)

        def label(m: re.Match[str]) -> str:
            logical_id, attribute = m.group(1), m.group(2) or ""
            name = self.labels.get(logical_id, logical_id)
            return f"<{name}{'' if attribute == '.Arn' else attribute}>"

        flat = re.sub(r"<([A-Za-z0-9]+)(\.[A-Za-z.]+)?>", label, flat)
        for literal, name in self.literals.items():
            flat = flat.replace(f"/{literal}/", f"/<{name}>/")
        return flat


class _Routes:
    """The API's routes: what the app serves, what the template deploys, and
    which route group's managed policy grants each."""

    def __init__(self, stack: OrchestratorStack, template: Mapping[str, Any]) -> None:
        resources = template["Resources"]
        deployed = {
            _shape(*res["Properties"]["RouteKey"].split(" ", 1))
            for res in resources.values()
            if res["Type"] == "AWS::ApiGatewayV2::Route"
        }
        served = {_shape(op.method, op.path) for op in OPERATIONS}
        if deployed != served:
            raise DocTablesError(
                "the API serves routes the template does not deploy "
                f"{sorted(served - deployed)}, or deploys routes it does not "
                f"serve {sorted(deployed - served)}"
            )
        self.all = served
        self.groups: dict[str, set[tuple[str, str]]] = {}
        for group, policy in stack.orchestrator.api.policies.items():
            logical_id = str(stack.resolve(policy.node.default_child.logical_id))  # type: ignore[union-attr]
            doc = resources[logical_id]["Properties"]["PolicyDocument"]
            self.groups[group] = {
                shape for stmt in doc["Statement"] for shape in self.granted(stmt) or ()
            }
        self.rows: list[tuple[str, str, str, str]] = []
        for op in OPERATIONS:
            shape = _shape(op.method, op.path)
            owners = [g for g, shapes in self.groups.items() if shape in shapes]
            if len(owners) != 1:
                raise DocTablesError(f"{op.method} {op.path} is in route groups {owners}")
            self.rows.append((owners[0], op.method, op.path, op.summary))
        order = list(self.groups)
        self.rows.sort(key=lambda row: order.index(row[0]))  # stable: OPERATIONS' order within

    @staticmethod
    def granted(stmt: Mapping[str, Any]) -> set[tuple[str, str]] | None:
        """The routes an `execute-api:Invoke` statement names (None: another statement)."""
        if _as_list(stmt["Action"]) != ["execute-api:Invoke"]:
            return None
        shapes = set()
        for resource in _as_list(stmt["Resource"]):
            tail = flatten_cfn_reference(resource).rsplit(STAGE, 1)[1]
            method, _, path = tail.partition("/")
            shapes.add((method, "/" + path))
        return shapes

    def describe(self, shapes: set[tuple[str, str]]) -> str:
        if shapes == self.all:
            return f"every route ({len(shapes)})"
        for group, routes in self.groups.items():
            if shapes == routes:
                return f"the `{group}` routes ({len(shapes)})"
        return ", ".join(f"`{m} {p}`" for m, p in sorted(shapes))


def _actions(actions: Iterable[str]) -> str:
    by_service: dict[str, list[str]] = {}
    for action in sorted(actions):
        service, _, name = action.partition(":")
        by_service.setdefault(service, []).append(name)
    return "; ".join(f"{service}: {', '.join(names)}" for service, names in by_service.items())


def _conditions(names: _Names, conditions: Mapping[str, Any] | None) -> str:
    parts = []
    for operator, keys in (conditions or {}).items():
        for key, value in keys.items():
            shown = ", ".join(names.resource(v) for v in _as_list(value))
            parts.append(f"{operator} `{key}` = `{shown}`")
    return "; ".join(parts)


def _trust(names: _Names, role: Mapping[str, Any]) -> str:
    out = []
    for stmt in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
        if _as_list(stmt["Action"]) != ["sts:AssumeRole"]:
            continue
        who = ", ".join(
            names.resource(p, whole_arn=True)
            for ps in stmt["Principal"].values()
            for p in _as_list(ps)
        )
        cond = _conditions(names, stmt.get("Condition"))
        out.append(who + (f" ({cond})" if cond else ""))
    return "; ".join(out)


def iam_roles(stack: OrchestratorStack, template: Mapping[str, Any]) -> str:
    """One row per statement of every role and managed policy."""
    names, routes = _Names(stack, template), _Routes(stack, template)
    resources = template["Resources"]
    inline: dict[str, list[dict[str, Any]]] = {}
    for res in resources.values():
        if res["Type"] == "AWS::IAM::Policy":
            for role in res["Properties"]["Roles"]:
                inline.setdefault(role["Ref"], []).extend(
                    res["Properties"]["PolicyDocument"]["Statement"]
                )
    principals = []
    for logical_id, res in resources.items():
        if res["Type"] == "AWS::IAM::Role":
            statements = list(inline.get(logical_id, []))
            who = f"role, assumed by {_trust(names, res)}"
            attached = [
                names.of(arn["Ref"]) for arn in res["Properties"].get("ManagedPolicyArns", [])
            ]
            if attached:
                who += f"; carries {', '.join(attached)}"
        elif res["Type"] == "AWS::IAM::ManagedPolicy":
            statements = res["Properties"]["PolicyDocument"]["Statement"]
            output = names.outputs.get(logical_id)
            who = "managed policy" + (f", output `{output}`" if output else "")
        else:
            continue
        principals.append((names.of(logical_id), who, statements))
    lines = [
        "| principal | what it is | actions | resources | condition |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, who, statements in sorted(principals):
        first = True
        for stmt in statements:
            if stmt.get("Effect") != "Allow":
                raise DocTablesError(f"{label}: a statement that is not Allow: {stmt}")
            shapes = routes.granted(stmt)
            scope = (
                routes.describe(shapes)
                if shapes is not None
                else ", ".join(f"`{names.resource(r)}`" for r in _as_list(stmt["Resource"]))
            )
            row = [
                label if first else "",
                who if first else "",
                _actions(_as_list(stmt["Action"])),
                scope,
                _conditions(names, stmt.get("Condition")),
            ]
            lines.append("| " + " | ".join(row) + " |")
            first = False
        if first:
            lines.append(f"| {label} | {who} | none of its own | | |")
    return "\n".join(lines) + "\n"


def api_routes(stack: OrchestratorStack, template: Mapping[str, Any]) -> str:
    """One row per route: its group, method and path, summary."""
    lines = ["| group | route | what it does |", "| --- | --- | --- |"]
    for group, method, path, summary in _Routes(stack, template).rows:
        lines.append(f"| `{group}` | `{method} {path}` | {summary.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def render(stack: OrchestratorStack, template: Mapping[str, Any]) -> dict[str, str]:
    """Every generated table, by marker name."""
    return {"iam-roles": iam_roles(stack, template), "api-routes": api_routes(stack, template)}


def rewrite(text: str, tables: Mapping[str, str]) -> str:
    """`text` with every generated block replaced by its table (a marker whose
    name is unknown is an error)."""
    found = [m.group(2) for m in BLOCK.finditer(text)]
    if unknown := sorted(set(found) - set(tables)):
        raise DocTablesError(f"unknown generated blocks {unknown}")
    return BLOCK.sub(lambda m: m.group(1) + tables[m.group(2)] + m.group(4), text)


def shown(paths: Iterable[Path] = DOCS) -> set[str]:
    """The names of the generated blocks the docs hold."""
    return {m.group(2) for p in paths for m in BLOCK.finditer(p.read_text())}


def synthesize() -> tuple[OrchestratorStack, dict[str, Any]]:
    """The default app as the tests synthesize it: cdk.json's context, no Lambda
    bundling, no cdk-nag, no account or region (an environment-agnostic template)."""
    from aws_cdk.assertions import Template

    from infra.app import build_app

    for var in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION"):
        os.environ.pop(var, None)
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    _, stack = build_app({**context, "aws:cdk:bundling-stacks": [], "orchestrator:nag": False})
    return stack, dict(Template.from_stack(stack).to_json())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.doc_tables",
        description="Render the docs' permission and route tables from the synthesized template.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the tables in the docs")
    mode.add_argument("--check", action="store_true", help="exit 1 if the docs differ")
    args = parser.parse_args(argv)
    tables = render(*synthesize())
    if not (args.write or args.check):
        for name, table in tables.items():
            print(f"<!-- generated: {name} -->\n{table}{END}\n")
        return 0
    if missing := sorted(set(tables) - shown()):
        raise DocTablesError(f"no doc shows the generated blocks {missing}")
    stale = []
    for path in DOCS:
        text = path.read_text()
        new = rewrite(text, tables)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if args.write:
                path.write_text(new)
    for path in stale:
        print(f"{'rewrote' if args.write else 'stale'}: {path}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
