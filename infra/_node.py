"""jsii forwards what its Node.js runtime prints outside its own protocol as
Python bytes (`b'!!...'`): its banner about an unsupported Node.js version came
out as a dozen lines of byte literals. `node_notice()` switches that banner
off and says the same once, readably. It runs before aws_cdk is imported
(importing it starts the jsii runtime).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

SUPPORTED_NODE_MAJORS = (22, 24)  # what the jsii in the lock supports (its banner lists them)


def node_notice() -> None:
    node = shutil.which("node")
    if node is None:
        return
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return
    match = re.match(r"v(\d+)", version)
    if not match or int(match.group(1)) in SUPPORTED_NODE_MAJORS:
        return
    major = match.group(1)
    for what in ("END_OF_LIFE", "DEPRECATED", "UNTESTED"):
        os.environ.setdefault(f"JSII_SILENCE_WARNING_{what}_NODE_VERSION", major)
    print(
        f"note: Node.js {version} is not one jsii supports "
        f"({', '.join(f'{m}.x' for m in SUPPORTED_NODE_MAJORS)}); synth works, "
        "but upgrade Node.js when you can",
        file=sys.stderr,
    )
