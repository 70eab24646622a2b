"""Finding 8: a malformed dashboard hash blanked the page (decodeURIComponent
threw URIError inside the router). The page's own `parseHash` runs here under
Node.js (no browser needed) on hostile hashes and must return a page to show."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

HASHES = ["#/runs/%", "#/runs/%E0%A4%A", "#/runs/%ZZ", "#/?status=%", "#%%%", "#/runs/", "#"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_parse_hash_survives_any_hash() -> None:
    source = (ROOT / "orchestrator" / "dashboard" / "app.js").read_text()
    body = re.search(r"  function parseHash\(\) \{\n.*?\n  \}\n", source, re.DOTALL)
    assert body, "parseHash not found in app.js"
    script = (
        body.group(0)
        + f"const out = [];\nfor (const h of {json.dumps(HASHES)}) {{\n"
        + "  globalThis.location = { hash: h };\n  out.push(parseHash());\n}\n"
        + "console.log(JSON.stringify(out));\n"
    )
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    pages = json.loads(done.stdout)
    assert [p["page"] for p in pages] == ["run", "run", "run", "list", "list", "list", "list"]
    assert pages[0]["id"] == "%"  # shown as typed; the API answers 400 for it
    source_route = re.search(r"  function route\(\) \{\n.*?\n  \}\n", source, re.DOTALL)
    assert source_route and "catch (e)" in source_route.group(0)  # the router itself never throws
