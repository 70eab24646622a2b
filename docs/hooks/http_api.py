"""MkDocs hook: the HTTP API reference, generated at build time from the OpenAPI
document the API serves at GET /openapi.json (`orchestrator/api/openapi.py`).

`docs/reference/http-api.md` holds the marker below; the build replaces it with
one section per operation (method and path, operation id, summary, parameters,
request body fields, answers). Nothing generated is checked in, so the page
cannot drift from the routes. `python docs/hooks/http_api.py` prints it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# The docs describe this checkout's code, installed or not.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MARKER = "<!-- openapi-operations -->"
PAGE = "reference/http-api.md"
METHODS = ("get", "post", "put", "patch", "delete")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words: its type, enum, bounds or pattern."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        kind = f"array of {_type(schema.get('items', {}))}"
    if isinstance(kind, list):
        kind = " or ".join(kind)
    extra = [
        f"{word} {schema[key]}"
        for key, word in (
            ("minimum", "≥"),
            ("maximum", "≤"),
            ("exclusiveMinimum", ">"),
            ("minLength", "length ≥"),
            ("maxLength", "length ≤"),
            ("maxItems", "items ≤"),
            ("format", "format"),
        )
        if key in schema
    ]
    if "pattern" in schema:
        extra.append(f"pattern `{schema['pattern']}`")
    return str(kind) + (f" ({', '.join(extra)})" if extra else "")


def _operation(method: str, path: str, op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    lines = [
        f"### `{method.upper()} {path}`",
        "",
        f"{op['summary'].rstrip('.')}. Operation id `{op['operationId']}`.",
        "",
    ]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | required | type | notes |", "| --- | --- | --- | --- | --- |"]
        for p in params:
            lines.append(
                f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} "
                f"| {_cell(_type(p.get('schema', {})))} | {_cell(p.get('description', ''))} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if props:
            lines += [
                "Request body (JSON):",
                "",
                "| field | required | type | default | notes |",
                "| --- | --- | --- | --- | --- |",
            ]
            for name, prop in props.items():
                default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
                lines.append(
                    f"| `{name}` | {'yes' if name in required else 'no'} | {_cell(_type(prop))} "
                    f"| {_cell(default)} | {_cell(prop.get('description', ''))} |"
                )
        else:
            lines.append("Request body: `{}` (every POST is `application/json`).")
        lines.append("")
    answers = []
    for code, answer in sorted(op["responses"].items()):
        kind = next(iter(answer.get("content", {})), "")
        answers.append(f"{code} ({'error' if answer['description'] == 'refused' else kind})")
    lines += ["Answers: " + ", ".join(answers) + ".", ""]
    return lines


def render(document: dict[str, Any]) -> str:
    """Markdown for every operation of an OpenAPI document, in its order."""
    schemas = document.get("components", {}).get("schemas", {})
    lines: list[str] = []
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                lines += _operation(method, path, item[method], schemas)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its {MARKER} marker")
    from orchestrator.api.openapi import document

    return markdown.replace(MARKER, render(document()))


if __name__ == "__main__":
    from orchestrator.api.openapi import document

    print(render(document()))
